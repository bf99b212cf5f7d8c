"""A judge endpoint that echoes the API key back: the key's value appears in no error text we write.

The loopback server's "echo_key" answers HTTP 401 with the request's Authorization header in its
body, as a misconfigured proxy does. Checked: the JobFailure message, error.json (reason and
traceback) written by the job entry point, every log record, and every file of the sweep.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from jobs.entry import run_job
from jobs.errors import JobFailure
from alignkit.contract.common import JudgeClientConfig
from jobs.judge.judges import make_judge, redact, secrets
from tests.fixtures.judge_server import JudgeServer

SECRET = "sk-echo-THIS-MUST-NOT-LEAK-42"
ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "assets" / "smoke-eval"


def test_redact_replaces_every_judges_key(monkeypatch):
    monkeypatch.setenv("K1", SECRET)
    monkeypatch.setenv("K2", "abc")  # too short to be a key: would redact ordinary text
    values = secrets([JudgeClientConfig(name=f"j{i}", type="openai", api_key_env=var)
                      for i, var in enumerate(("K1", "K2", None))] + [None])
    assert values == [SECRET]
    assert redact(f"got {SECRET} and {SECRET}!", values) == "got [redacted] and [redacted]!"


def test_openai_judge_error_is_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHO_KEY", SECRET)
    with JudgeServer(script=["echo_key"]) as srv:
        judge = make_judge(srv.judge(api_key_env="ECHO_KEY"), tmp_path)
        with pytest.raises(JobFailure) as err:
            judge.ask("s", "u")
        assert srv.requests  # the server did see (and echo) it
    assert "HTTP 401" in str(err.value) and "Bearer [redacted]" in str(err.value) and SECRET not in str(err.value)


def _judge_job(sweep: Path, bench_name: str, bench: dict, rows: list[dict]) -> Path:
    ev = sweep / "jobs" / "ev"
    (ev / "generations" / "final").mkdir(parents=True)
    (ev / "generations" / "final" / f"{bench_name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (ev / "eval.json").write_text(json.dumps({"checkpoints": {"final": {bench_name: {
        "n": len(rows), "generations": f"generations/final/{bench_name}.jsonl"}}}, "provenance": {}}))
    (ev / "DONE").write_text("1\n")
    jd = sweep / "jobs" / "jd"
    jd.mkdir()
    (jd / "config.json").write_text(json.dumps({"stage": "judge", "axes": {}, "target": {"job": "ev"},
                                                "benchmarks": {bench_name: bench}}))
    return jd


def _assert_nowhere(sweep: Path, caplog) -> None:
    for f in sweep.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace"), f
    assert SECRET not in caplog.text


def test_red_instruct_judge_job_writes_no_key(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ECHO_KEY", SECRET)
    monkeypatch.delenv("ALIGNKIT_JUDGE_CACHE", raising=False)
    caplog.set_level(logging.INFO)
    with JudgeServer(script=["echo_key"]) as srv:
        bench = {"type": "red_instruct", "source": str(SMOKE / "red-instruct"),
                 "judge": srv.judge_config(name="j", api_key_env="ECHO_KEY")}
        jd = _judge_job(tmp_path, "red_instruct", bench, [{"prompt": "q", "response": "r"}])
        with pytest.raises(JobFailure):
            run_job(jd)
    err = json.loads((jd / "error.json").read_text())
    assert "HTTP 401" in err["reason"] and "[redacted]" in err["reason"]
    _assert_nowhere(tmp_path, caplog)


def test_alpaca_eval_judge_job_writes_no_key(tmp_path, monkeypatch, caplog):
    """The alpaca_eval package logs the openai client's error and re-raises it: both are redacted."""
    monkeypatch.setenv("ECHO_KEY", SECRET)
    monkeypatch.delenv("ALIGNKIT_JUDGE_CACHE", raising=False)
    caplog.set_level(logging.INFO)
    refs = json.loads((SMOKE / "alpaca_eval" / "alpaca_eval.json").read_text())[:2]
    rows = [dict(r, output="an answer", generator="ours") for r in refs]
    with JudgeServer(script=["echo_key"] * 10) as srv:
        bench = {"type": "alpaca_eval", "source": str(SMOKE / "alpaca_eval" / "alpaca_eval.json"),
                 "length_controlled": False,
                 "judge": srv.judge_config(name="j", api_key_env="ECHO_KEY", model="gpt-4-1106-preview")}
        jd = _judge_job(tmp_path, "alpaca_eval", bench, rows)
        with pytest.raises(JobFailure):
            run_job(jd)
        assert srv.requests
    err = json.loads((jd / "error.json").read_text())
    assert "AuthenticationError" in err["reason"] and "[redacted]" in err["reason"]
    assert "\n" not in err["reason"]
    _assert_nowhere(tmp_path, caplog)
