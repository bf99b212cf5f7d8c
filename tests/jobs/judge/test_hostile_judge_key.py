"""Hostile judge gateways: no run of 8 characters of the judge's key reaches any file of the sweep.

A 164-character key (no `sk-` shape, so only the key-run redaction can catch it) is sent to a loopback
gateway that echoes it back: after 100 bytes of padding in a 401 (the reply is cut at 200 bytes, so
only part of the key is in the cut text), whole in a 200's reply text, and as `Bearer <key>`. The judge
job runs through the local executor's child (its job log), the journal records its end, and `status`
and `collect` (CSV, Markdown, HTML) read it back: every file of the sweep is scanned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.submit import launch
from alignkit.cli.main import main
from alignkit.plan.model import Job
from alignkit.contract.redact import KEY_RUN, redact
from alignkit.submit.sweepdir import SweepDir
from jobs.judge.judges import make_judge
from jobs.errors import JobFailure
from tests.slurm import fakeplan as fp
from tests.fixtures.judge_server import JudgeServer

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "assets" / "smoke-eval"
KEY = "".join("QWERTYUIOPASDFGHJKLZXCVBNMqwertyuiopasdfghjklzxcvbnm0123456789"[(i * 7) % 62] for i in range(164))


def _leaks(text: str, key: str = KEY) -> list[str]:
    return [key[i:i + KEY_RUN] for i in range(len(key) - KEY_RUN + 1) if key[i:i + KEY_RUN] in text]


def _scan(root: Path) -> dict[str, list[str]]:
    found = {}
    for f in root.rglob("*"):
        if f.is_file() and not f.is_symlink():
            hits = _leaks(f.read_bytes().decode("utf-8", "replace"))
            if hits:
                found[str(f.relative_to(root))] = hits[:3]
    return found


def test_redact_masks_every_run_of_the_key_and_key_shapes():
    cut = "prefix " + KEY[30:172]  # a reply cut short: the tail of the key is missing
    assert _leaks(redact(cut, [KEY])) == [] and "[redacted]" in redact(cut, [KEY])
    assert redact(f"{KEY[:7]} ok", [KEY]) == f"{KEY[:7]} ok"  # 7 characters: ordinary text stays
    assert redact("Authorization: Bearer abcdefgh12345678") == "Authorization: Bearer [redacted]"
    assert redact("key sk-proj-AAAAbbbbCCCCdddd1234 used") == "key [redacted] used"
    assert redact("the task-level risk-free sk-learn run") == "the task-level risk-free sk-learn run"
    assert redact("missing Bearer authentication") == "missing Bearer authentication"


@pytest.mark.parametrize("action", ["echo_token", "echo_key", "echo_token_ok"])
def test_judge_error_and_reply_hold_no_run_of_the_key(tmp_path, monkeypatch, action):
    monkeypatch.setenv("LONG_KEY", KEY)
    with JudgeServer(script=[action] * 5) as srv:
        judge = make_judge(srv.judge(api_key_env="LONG_KEY", max_retries=0), tmp_path / "cache")
        try:
            text = judge.ask("s", "u")
        except JobFailure as exc:
            text = str(exc)
        assert srv.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # it was sent, and echoed
    assert _leaks(text) == [] and "[redacted]" in text
    assert _scan(tmp_path) == {}  # nor in the verdict cache


def _sweep_with_judge(tmp_path: Path, judge_cfg: dict) -> tuple[SweepDir, Job]:
    ev = fp.job("ev", stage="eval")
    config = {"stage": "judge", "axes": {}, "target": {"job": ev.id}, "benchmarks": {"red_instruct": {
        "type": "red_instruct", "source": str(SMOKE / "red-instruct"), "judge": judge_cfg}}}
    jd = Job(id="judgejob0001", name="judge-hostile", stage="judge", depends_on=(ev.id,), config=config,
             resources=fp.resources("judge"))
    sd = SweepDir.of(tmp_path / "sweep")
    launch.write_sweep(fp.plan(sd.root, [ev, jd]), sd)
    gen = sd.job(ev.id) / "generations" / "final"
    gen.mkdir(parents=True)
    (gen / "red_instruct.jsonl").write_text(json.dumps({"prompt": "q", "response": "r"}) + "\n")
    (sd.job(ev.id) / "eval.json").write_text(json.dumps({"checkpoints": {"final": {"red_instruct": {
        "n": 1, "generations": "generations/final/red_instruct.jsonl"}}}, "provenance": {}}))
    (sd.job(ev.id) / "DONE").write_text("1\n")
    return sd, jd


def test_echoing_gateway_leaves_no_run_of_the_key_in_any_file_of_the_sweep(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LONG_KEY", KEY)
    monkeypatch.delenv("ALIGNKIT_JUDGE_CACHE", raising=False)
    with JudgeServer(script=["echo_token"] * 20) as srv:
        sd, jd = _sweep_with_judge(tmp_path, srv.judge_config(name="j", api_key_env="LONG_KEY", max_retries=1))
        folder = str(sd.root / "logs" / "%j")
        code = ("import sys; from alignkit.submit.localrun import _run_child; _run_child(sys.argv[1], sys.argv[2])")
        res = subprocess.run([sys.executable, "-c", code, str(sd.job(jd.id)), folder], cwd=ROOT, timeout=120,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
        assert srv.requests
    assert res.returncode == 1
    logs = list((sd.root / "logs").rglob("*_log.err"))
    assert logs and "HTTP 401" in logs[0].read_text()  # the job log holds the reason, redacted
    err = json.loads((sd.job(jd.id) / "error.json").read_text())
    assert "HTTP 401" in err["reason"] and "[redacted]" in err["reason"]
    from alignkit.submit import journal
    from alignkit.status.state import error_reason
    journal.append(sd, {"type": "local_end", "job": jd.id, "state": "FAILED", "reason": error_reason(sd.job(jd.id))})
    assert main(["status", str(sd.root)]) in (0, 1)
    assert main(["collect", str(sd.root), "--format", "csv,md,html", "--no-sacct"]) in (0, 1)
    out = capsys.readouterr()
    assert _leaks(out.out + out.err) == []
    assert _scan(sd.root) == {}


def test_status_masks_key_material_an_older_job_wrote(tmp_path, monkeypatch):
    """An error.json written before this redaction (or by hand) never reaches status, the journal or a
    report with a run of the key: status reads the reason through the same redaction."""
    from alignkit.status.state import error_reason

    monkeypatch.setenv("LONG_KEY", KEY)
    job = tmp_path / "jobs" / "j1"
    job.mkdir(parents=True)
    (job / "config.json").write_text(json.dumps({"stage": "judge", "benchmarks": {"b": {"judge": {
        "api_key_env": "LONG_KEY"}}}}))
    (job / "error.json").write_text(json.dumps({"reason": f"HTTP 401: key {KEY[20:60]} and Bearer abcdefgh12345"}))
    reason = error_reason(job)
    assert _leaks(reason) == [] and "abcdefgh12345" not in reason and reason.startswith("HTTP 401: key [redacted]")
