"""`status`, `logs`, `cancel` on a sweep with corrupt files: every file collect tolerates is
reported (file, line or key) and skipped; a manifest that is not JSON at all is one line, exit 2.
Never a traceback."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from alignkit.submit import launch
from alignkit.backends import sacct
from alignkit.backends import slurm as slurm_backend
from alignkit.cli.main import main as cli
from alignkit.submit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp

SACCT = ("10_0|n|COMPLETED|0:0|5|vm|None\n10_1|n|FAILED|1:0|4|vm|None\n10_2|n|RUNNING|0:0|9|vm|None\n"
         "11_[0-2]|n|PENDING|0:0|0|None assigned|Dependency\n")


@pytest.fixture
def sweep(tmp_path, monkeypatch):
    """3 trains (done, failed, running) and their 3 evals (pending), journaled as two arrays."""
    trains = [fp.job(f"t{i}", steps=1) for i in range(3)]
    evals = [fp.job(f"e{i}", stage="eval", deps=(t.id,)) for i, t in enumerate(trains)]
    sd = SweepDir.of(tmp_path)
    launch.write_sweep(fp.plan(tmp_path, trains + evals), sd)
    now = time.time()
    lines = [{"type": "submission", "token": "a", "stage": "train", "executor": "slurm", "array_job_id": "10",
              "jobs": {t.id: i for i, t in enumerate(trains)}, "waits_on": {}, "hold": False,
              "folder": str(tmp_path / "slurm/%j"), "time": now},
             {"type": "submission", "token": "b", "stage": "eval", "executor": "slurm", "array_job_id": "11",
              "jobs": {e.id: i for i, e in enumerate(evals)}, "waits_on": {e.id: [["10", i]] for i, e in enumerate(evals)},
              "hold": False, "folder": str(tmp_path / "slurm/%j"), "time": now}]
    sd.journal.write_text("".join(json.dumps(r) + "\n" for r in lines))
    (sd.job(trains[0].id) / "DONE").write_text("1\n")
    (sd.job(trains[1].id) / "error.json").write_text('{"reason": "NaN loss at step 3"}')
    (sd.job(trains[2].id) / "progress.json").write_text('{"step": 2, "max_steps": 4, "loss": 0.5}')

    class FakePending:
        def __init__(self, ids, timeout_s=30.0):
            pass

        def result(self):
            return sacct.parse(SACCT)
    monkeypatch.setattr(sacct, "Pending", FakePending)
    scancelled: list[list[str]] = []
    monkeypatch.setattr(slurm_backend.subprocess, "run",
                        lambda cmd, **kw: scancelled.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""))
    return sd, trains, evals


def _run(capsys, *argv: str) -> tuple[int, str, list[str]]:
    rc = cli(list(argv))
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert "Traceback" not in cap.err and all(line.startswith(f"alignkit {argv[0]}: ") for line in err), cap.err
    return rc, cap.out, err


def _all_three_go_on(capsys, sd: SweepDir, expect: str, job: str = "t0") -> None:
    rc, out, _ = _run(capsys, "status", str(sd.root), "--json")
    assert rc == 0
    st = json.loads(out)
    assert any(expect in w for w in st["warnings"]), st["warnings"]
    rc, out, _ = _run(capsys, "status", str(sd.root))
    assert rc == 0 and expect in out
    rc, _, err = _run(capsys, "logs", job, "-d", str(sd.root))
    assert rc == 0 and any(expect in line for line in err), err
    rc, out, err = _run(capsys, "cancel", str(sd.root))
    assert rc == 0 and any(expect in line for line in err), err


JOURNAL_LINES = [
    "not json {", "[1, 2]", '"a string"', "42", "null", "{}", '{"type": "submission"}',
    '{"type": "submission", "token": "x", "executor": "slurm", "jobs": [1], "time": 1, "array_job_id": "9"}',
    '{"type": "submission", "token": "x", "executor": "slurm", "jobs": {"j": "0"}, "time": 1, "array_job_id": "9"}',
    '{"type": "submission", "token": "x", "executor": "slurm", "jobs": {"j": 0}, "time": "now", "array_job_id": "9"}',
    '{"type": "submission", "token": "x", "executor": "slurm", "jobs": {"j": 0}, "time": 1, "array_job_id": 9}',
    '{"type": "submission", "token": "x", "executor": "slurm", "jobs": {"j": 0}, "time": 1, "array_job_id": "9",'
    ' "waits_on": {"j": "10_1"}}',
    '{"type": "submission", "token": 5, "executor": "slurm", "jobs": {}, "time": 1, "array_job_id": null}',
    '{"type": "local_start", "token": "x", "job": "j", "time": 1}',
    '{"type": "local_end", "token": "x", "job": "j", "state": 3, "time": 1}',
    '{"type": "cancel", "slurm_ids": "10_1"}', '{"type": "cancel", "local_jobs": {"a": 1}}',
    '{"type": "blocked", "slurm_ids": ["11_1"], "reason": ["x"]}', '{"type": "release", "slurm_ids": [1]}',
    '{"type": "cancel", "sched_ids": "10_1"}', '{"type": "blocked", "sched_ids": [11]}',
    '{"type": "intent", "token": "x", "name": "n", "jobs": {"a": 1}}', '{"type": "rollback", "tokens": "ab"}',
    '{"type": "no-such-type"}', '{"type": ["submission"]}',
]


@pytest.mark.parametrize("line", JOURNAL_LINES)
def test_bad_journal_line_is_reported_and_skipped(sweep, capsys, line):
    sd, _, _ = sweep
    with open(sd.journal, "a") as f:
        f.write(line + "\n")
        f.write(json.dumps({"type": "abandoned", "token": "zz", "time": 1.0}) + "\n")  # not the torn last line
    _all_three_go_on(capsys, sd, f"{sd.journal}:3")


@pytest.mark.parametrize("record", [{"type": "cancel", "local_jobs": ["../../etc"]},
                                    {"type": "local_start", "token": "../x", "job": "j", "local_id": "1"},
                                    {"type": "abandoned", "token": "a/b"}])
def test_unsafe_id_in_the_journal_is_refused_in_one_line(sweep, capsys, record):
    """A job id becomes a path: one that is not a safe name is refused where it is read (item 2)."""
    sd, _, _ = sweep
    with open(sd.journal, "a") as f:
        f.write(json.dumps({"time": 1.0, **record}) + "\n")
    for argv in (["status", str(sd.root)], ["logs", "t0", "-d", str(sd.root)], ["cancel", str(sd.root)]):
        rc, _, err = _run(capsys, *argv)
        assert rc == 2 and len(err) == 1 and f"{sd.journal}: line 3: key '" in err[0], err


def test_non_utf8_journal_bytes_and_a_torn_last_line(sweep, capsys):
    sd, _, _ = sweep
    with open(sd.journal, "ab") as f:
        f.write(b'{"type": "cancel", "slurm_ids": ["\xff\xfe"]}\n{"type": "submission", "tok')
    rc, out, _ = _run(capsys, "status", str(sd.root), "--json")
    st = json.loads(out)
    assert rc == 0 and st["summary"]["train"] == {"COMPLETED": 1, "FAILED": 1, "RUNNING": 1}
    assert not any(":4" in w for w in st["warnings"]), "a torn last line is not a problem"


PROGRESS = ["[]", '"x"', "3", "null", "{", '{"step": "two", "max_steps": 4}', '{"step": 1, "max_steps": 4, "loss": "x"}',
            '{"step": 1, "max_steps": 4, "loss": NaN}', '{"step": 1, "max_steps": 4, "loss": -Infinity}',
            '{"step": 1, "max_steps": [4]}', '{"step": true, "max_steps": 4}']


@pytest.mark.parametrize("text", PROGRESS)
def test_progress_json_of_the_wrong_type(sweep, capsys, text):
    sd, trains, _ = sweep
    path = sd.job(trains[2].id) / "progress.json"
    path.write_text(text)
    _all_three_go_on(capsys, sd, str(path), job="t2")


@pytest.mark.parametrize("loss", ["NaN", "Infinity", "-Infinity"])
def test_status_json_never_prints_a_bare_non_finite_number(sweep, capsys, loss):
    sd, trains, _ = sweep
    (sd.job(trains[2].id) / "progress.json").write_text(f'{{"step": 1, "max_steps": 4, "loss": {loss}}}')
    rc, out, err = _run(capsys, "status", str(sd.root), "--json")
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c} in status --json"))
    assert rc == 0 and "'loss' is not a finite number" in " ".join(err + data.get("warnings", []))
    assert next(j for j in data["jobs"] if j["name"] == "t2")["progress"]["loss"] is None


ERRORS = ["[]", '"reason"', "7", "null", "{", '["NaN loss"]']


@pytest.mark.parametrize("text", ERRORS)
def test_error_json_of_the_wrong_type(sweep, capsys, text):
    sd, trains, _ = sweep
    path = sd.job(trains[1].id) / "error.json"
    path.write_text(text)
    _all_three_go_on(capsys, sd, str(path), job="t1")
    rc, out, _ = _run(capsys, "status", str(sd.root), "--json")
    t1 = next(j for j in json.loads(out)["jobs"] if j["name"] == "t1")
    assert t1["state"] == "FAILED" and t1["reason"] == "exit code 1:0"  # the next source of a reason


@pytest.mark.parametrize("entry", ['1', '"x"', '{"name": "no id"}', '["a"]'])
def test_bad_manifest_entry_is_reported_and_skipped(sweep, capsys, entry):
    sd, _, _ = sweep
    manifest = json.loads(sd.manifest.read_text())
    manifest["jobs"].insert(1, json.loads(entry))
    sd.manifest.write_text(json.dumps(manifest))
    _all_three_go_on(capsys, sd, f"{sd.manifest}: jobs[1]")


@pytest.mark.parametrize("how", ["truncated", "list", "jobs-not-list", "binary", "empty"])
def test_unreadable_manifest_is_one_line(sweep, capsys, how):
    sd, _, _ = sweep
    text = sd.manifest.read_text()
    data = {"truncated": text[: len(text) // 2].encode(), "list": b"[]", "jobs-not-list": b'{"jobs": {}}',
            "binary": b"\xff\xfe\x00garbage", "empty": b""}[how]
    sd.manifest.write_bytes(data)
    for argv in (["status", str(sd.root)], ["logs", "t0", "-d", str(sd.root)], ["cancel", str(sd.root)]):
        rc, _, err = _run(capsys, *argv)
        assert rc == 2 and len(err) == 1 and str(sd.manifest) in err[0], err


def test_healthy_sweep_has_no_warnings(sweep, capsys):
    sd, _, _ = sweep
    rc, out, _ = _run(capsys, "status", str(sd.root), "--json")
    st = json.loads(out)
    assert rc == 0 and st["warnings"] == []
    assert {j["name"]: j["state"] for j in st["jobs"]} == {"t0": "COMPLETED", "t1": "FAILED", "t2": "RUNNING",
                                                          "e0": "PENDING", "e1": "BLOCKED", "e2": "PENDING"}
    assert Path(sd.root).exists()
