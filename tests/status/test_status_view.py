"""`alignkit status` for a person: the per-array view of the full study (1,388 jobs, from
sweeps/full.yaml) fits 120 columns and ~30 lines, ETA math, failures listed with their reasons,
--jobs rows fit the width, the default sweep directory, and `logs` by part of a name."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from alignkit.submit import journal
from alignkit.submit import launch
from alignkit.status import view as statusview
from alignkit.backends import sacct
from alignkit.cli.main import main
from alignkit.plan.compiler import load_plan
from alignkit.submit.journal import Attempt
from alignkit.status.state import JobStatus, StudyStatus
from alignkit.submit.sweepdir import SweepDir
from tests.submit.test_launch import fake_pending

REPO = Path(__file__).resolve().parents[2]
NOW = time.time()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The full study as launch would queue it (one journal submission per array, launch's own
    grouping), with sacct saying: the two train arrays all done but 3 failed (error.json
    reasons), the first 180-element eval array half done, 4 running, the rest pending; every
    other array pending; each finished train ran 3,600 s, each finished eval 600 s."""
    root = tmp_path_factory.mktemp("full")
    plan = load_plan(REPO / "sweeps/full.yaml", output_dir=root)
    sd = SweepDir.of(root)
    launch.write_sweep(plan, sd)
    groups = launch._make_groups(plan, plan.jobs)
    rows, failed = [], []
    first_eval = next(k for k, h in enumerate(groups) if h.stage == "eval" and len(h.jobs) == 180)
    for n, g in enumerate(groups):
        arr = str(1000 + n)
        journal.append(sd, {"type": "submission", "token": g.token, "stage": g.stage, "executor": "slurm",
                            "array_job_id": arr, "jobs": {j.id: i for i, j in enumerate(g.jobs)}, "waits_on": {},
                            "hold": False, "folder": str(root / "slurm/%j"), "time": time.time() - 7200})  # built when first used, not at collection
        for i, j in enumerate(g.jobs):
            if g.stage == "train":
                state, el = ("FAILED", 1200) if i < 3 and len(failed) < 3 else ("COMPLETED", 3600)
                if state == "FAILED":
                    failed.append(j.name)
                    (sd.job(j.id) / "error.json").write_text(json.dumps({"reason": f"CUDA out of memory #{i}"}))
                else:
                    (sd.job(j.id) / "DONE").write_text("1\n")
            elif n == first_eval:
                state, el = ("COMPLETED", 600) if i < 90 else ("RUNNING", 300) if i < 94 else ("PENDING", 0)
                if state == "COMPLETED":
                    (sd.job(j.id) / "DONE").write_text("1\n")
            else:
                state, el = "PENDING", 0
            rows.append(f"{arr}_{i}|n|{state}|0:0|{el}|{'vm' if el else 'None assigned'}|None")
    return sd, sacct.parse("\n".join(rows) + "\n"), groups, failed


def _status(monkeypatch, capsys, recs, argv, columns=120, lines=30):
    monkeypatch.setattr(sacct, "Pending", fake_pending(recs))
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("LINES", str(lines))
    rc = main(["status", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_full_study_fits_120_columns_and_30_lines(full, monkeypatch, capsys):
    sd, recs, groups, failed = full
    rc, out, err = _status(monkeypatch, capsys, recs, [str(sd.root)])
    lines = out.splitlines()
    assert rc == 0 and not err
    assert len(groups) == 11 and sum(len(g.jobs) for g in groups) == 1388
    assert max(map(len, lines)) <= 120 and len(lines) <= 30, out
    assert lines[0].startswith("thakkar2024-full: ") and "1388 jobs in 11 arrays" in lines[0] and "3 failed" in lines[0]
    array_lines = lines[2:2 + 11]
    # launch's arrays: per stage x resource class x upstream array, in stage order
    assert [ln.split()[0] for ln in array_lines] == ["train"] * 2 + ["eval"] * 4 + ["merge"] + ["judge"] * 4
    assert sum(int(ln.split()[4]) for ln in array_lines) == 90 + 357  # the DONE column
    # failures: each with its error.json reason
    i = lines.index("failures (3):")
    assert [ln.split("FAILED: ")[1] for ln in lines[i + 1:i + 4]] == [f"CUDA out of memory #{k}" for k in range(3)]
    assert all(name in "\n".join(lines[i + 1:]) for name in failed)
    # a narrower terminal: still fits
    rc, out, _ = _status(monkeypatch, capsys, recs, [str(sd.root)], columns=80)
    assert max(map(len, out.splitlines())) <= 80


def test_array_line_counts_and_eta(full, monkeypatch, capsys):
    sd, recs, groups, _ = full
    ev = next(g for g in groups if g.stage == "eval" and len(g.jobs) == 180)
    n = len(ev.jobs)
    rc, out, _ = _status(monkeypatch, capsys, recs, [str(sd.root)], columns=160)
    line = next(ln for ln in out.splitlines() if ln.startswith("eval") and f"#{1000 + groups.index(ev)}" in ln)
    done, run, pend, held, fail, todo = (int(x) for x in line.split()[4:10])
    assert (done, run, pend, held, fail, todo) == (n // 2, 4, n - n // 2 - 4, 0, 0, 0)
    # ETA: mean finished 600 s; 4 running at 300 s need 4×300; pending need 600 each; over 4 running
    expected = (4 * 300 + (n - n // 2 - 4) * 600) / 4
    assert line.split()[-1] == statusview.fmt_s(expected) and re.fullmatch(r"2:0\d:\d\d", line.split()[-2])  # since submission
    assert f"{100 * done // n}%" in line


def test_eta_math():
    assert statusview.eta_s([], [10], 3) is None  # nothing finished: no estimate
    assert statusview.eta_s([100, 200], [50], 3) == 100 + 3 * 150  # one slot
    assert statusview.eta_s([100], [150, 20], 0) == 80 / 2  # an overrun element needs nothing more
    assert statusview.eta_s([60], [], 5) == 300  # nothing running: one slot assumed
    assert statusview.fmt_s(59) == "0:59" and statusview.fmt_s(3661) == "1:01:01" and statusview.fmt_s(90000) == "1d01h"


@pytest.mark.parametrize("flags", [["--jobs"], ["--failed"], ["--stage", "merge"], ["--running"]])
def test_job_rows_fit_the_width(full, monkeypatch, capsys, flags):
    sd, recs, groups, failed = full
    rc, out, _ = _status(monkeypatch, capsys, recs, [str(sd.root), *flags], columns=100)
    lines = out.splitlines()
    assert rc == 0 and max(map(len, lines)) <= 100
    assert lines[0].split()[:3] == ["ID", "STAGE", "STATE"]
    expect = {"--jobs": 1388, "--failed": 3, "--stage": 100, "--running": 4}[flags[0]]
    total = 100 if flags[0] == "--stage" else 1388  # --stage reads only that stage
    assert len(lines) == expect + 2 and lines[-1].startswith(f"{expect} of {total} jobs")
    if flags == ["--failed"]:
        assert [ln.split()[2] for ln in lines[1:-1]] == ["FAILED"] * 3
        assert all("CUDA out of memory" in ln for ln in lines[1:-1])


def test_json_is_unchanged(full, monkeypatch, capsys):
    sd, recs, _, _ = full
    rc, out, _ = _status(monkeypatch, capsys, recs, [str(sd.root), "--json"])
    st = json.loads(out)
    assert set(st) == {"format", "sweep", "sweep_dir", "time", "sacct_ok", "warnings", "summary", "jobs"}
    assert set(st["jobs"][0]) == {"id", "name", "stage", "state", "reason", "elapsed_s", "node", "restarts",
                                  "progress", "slurm_id", "executor", "attempts", "log"}
    assert st["summary"]["train"] == {"COMPLETED": 357, "FAILED": 3}


def _tiny_sweep(root: Path, names=("dpo-mistral-seed1", "dpo-mistral-seed2", "sft-zephyr-seed1")) -> SweepDir:
    sd = SweepDir.of(root)
    root.mkdir(parents=True)
    sd.manifest.write_text(json.dumps({"format": 1, "sweep": root.name, "jobs": [
        {"id": f"id{i:02d}abc", "name": n, "stage": "train"} for i, n in enumerate(names)]}))
    return sd


def test_default_sweep_is_the_newest_under_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs/" in err[0] and "Traceback" not in err[0]
    old, new = _tiny_sweep(tmp_path / "runs/old"), _tiny_sweep(tmp_path / "runs/group/new")
    os.utime(old.manifest, (NOW - 100, NOW - 100))
    os.utime(new.manifest, (NOW, NOW))
    for argv in (["status"], ["cancel"], ["collect"]):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 0 or argv == ["collect"], (argv, err)  # collect: no results in this sweep
        assert "using runs/group/new (most recent sweep under runs/)" in err, (argv, err)
    os.utime(old.manifest, (NOW + 10, NOW + 10))
    assert main(["status", "--json"]) == 0
    cap = capsys.readouterr()
    assert "using runs/old" in cap.err and json.loads(cap.out)["sweep"] == "old"
    # inside a sweep directory: that one, nothing said
    monkeypatch.chdir(new.root)
    assert main(["status", "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["sweep"] == "new" and cap.err == ""


def test_logs_by_a_unique_part_of_a_name(tmp_path, monkeypatch, capsys):
    sd = _tiny_sweep(tmp_path / "s")
    d = str(sd.root)
    assert main(["logs", "zephyr", "-d", d]) == 2  # unique: found; never submitted, so no logs
    assert capsys.readouterr().err.strip() == "alignkit logs: error: job id02abc (sft-zephyr-seed1) was never submitted: no logs"
    assert main(["logs", "MISTRAL", "-d", d]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["alignkit logs: error: 'MISTRAL' matches 2 jobs (train dpo-mistral-seed1, train dpo-mistral-seed2); "
                   "give more of the name, --stage or a job id"]
    assert main(["logs", "seed2", "-d", d]) == 2
    assert "job id01abc (dpo-mistral-seed2)" in capsys.readouterr().err
    assert main(["logs", "llama", "-d", d]) == 2
    assert "no job matches 'llama'" in capsys.readouterr().err


def test_eval_progress_is_throttled_and_read_by_status(tmp_path):
    from alignkit.status.state import _progress
    from jobs.eval.task_progress import TaskProgress
    t = [0.0]
    p = TaskProgress(tmp_path, total=3, every_s=5.0, clock=lambda: t[0])
    p.start("2", "mmlu")  # the first write always goes out
    assert p.writes == 1 and json.loads((tmp_path / "progress.json").read_text())["step"] == 0
    p.done(4)
    p.start("2", "bbh")
    assert p.writes == 1  # within 5 s: nothing written
    t[0] = 6.0
    p.done(3)
    assert p.writes == 2
    t[0] = 7.0
    p.start("final", "mmlu")
    p.done(2)  # the last step always goes out
    assert p.writes == 3
    warnings: list[str] = []
    got = _progress(tmp_path, warnings)
    assert not warnings and got["step"] == got["max_steps"] == 3 and got["items_done"] == 9
    assert got["benchmark"] == "mmlu" and got["checkpoint"] == "final" and got["loss"] is None
    from alignkit.status.view import _progress as shown
    from alignkit.status.state import JobStatus
    assert shown(JobStatus("x", "x", "eval", "RUNNING", progress=got)) == "3/3 mmlu 9 items"


# ---- issue 22 item 5: HELD, ELAPSED at the end, names cut in the middle, colour -----------------------------
def _job(i: int, state: str, token: str = "t1", ended_at: float | None = None, stage: str = "train",
         name: str | None = None, reason: str | None = None) -> JobStatus:
    att = Attempt(job_id=f"j{i}", token=token, stage=stage, executor="slurm", array_job_id="500", index=i,
                  time=NOW - 3600, hold=False, folder="/x")
    return JobStatus(id=f"{i:012d}", name=name or f"m/d/p/sft/lora/s{i}", stage=stage, state=state, attempt=att,
                     ended_at=ended_at, reason=reason, resources={"gpus": 1, "time_min": 60})


def test_held_jobs_are_their_own_state(tmp_path, monkeypatch, capsys):
    """sacct says PENDING (reason JobHeldUser) for a job queued with --hold: status says HELD."""
    sd, recs, groups, _ = _held_sweep(tmp_path)
    rc, out, _ = _status(monkeypatch, capsys, recs, [str(sd.root)])
    head, line = out.splitlines()[1], out.splitlines()[2]
    assert head.split()[1:7] == ["DONE", "RUN", "PEND", "HELD", "FAIL", "TODO"]
    assert line.split()[4:10] == ["0", "0", "0", str(len(groups[0].jobs)), "0", "0"] and line.endswith("held")
    rc, out, _ = _status(monkeypatch, capsys, recs, [str(sd.root), "--json"])
    assert {j["state"] for j in json.loads(out)["jobs"]} == {"HELD"}
    rc, out, _ = _status(monkeypatch, capsys, recs, [str(sd.root), "--failed"])
    assert out.splitlines()[-1].startswith("0 of ")  # held is not a failure


def _held_sweep(root: Path):
    from tests.fixtures.spec_fixtures import base, write
    d = base()
    d["grid"].update(model=["m1"], dataset=["hh"], preference=["helpful"], method=["sft"], peft=["lora"], seed=[0, 1])
    d["evals"]["benchmarks"], d["merges"] = {}, []
    os.environ.setdefault("KEY", "x")
    plan = load_plan(write(root, d), output_dir=root / "sweep")
    sd = SweepDir.of(root / "sweep")
    launch.write_sweep(plan, sd)
    groups = launch._make_groups(plan, plan.jobs)
    g = groups[0]
    journal.append(sd, {"type": "submission", "token": g.token, "stage": g.stage, "executor": "slurm",
                        "array_job_id": "700", "jobs": {j.id: i for i, j in enumerate(g.jobs)}, "waits_on": {},
                        "hold": True, "folder": str(root / "slurm/%j"), "time": time.time() - 60})
    rows = [f"700_{i}|n|PENDING|0:0|0|None assigned|JobHeldUser" for i in range(len(g.jobs))]
    return sd, sacct.parse("\n".join(rows) + "\n"), groups, None


def test_elapsed_stops_when_the_array_ended():
    jobs = [_job(0, "COMPLETED", ended_at=NOW - 3000), _job(1, "FAILED", ended_at=NOW - 2400, reason="oom")]
    st = StudyStatus("s", Path("/x"), jobs, True, 0.0)
    line = statusview.render_arrays(st, 120, 30, now=NOW).splitlines()[2]
    assert line.split()[-2:] == ["20:00", "ended"]  # queued an hour ago, last job ended 40 min ago
    jobs.append(_job(2, "RUNNING"))
    line = statusview.render_arrays(st, 120, 30, now=NOW).splitlines()[2]
    assert line.split()[-2] == "1:00:00"  # still running: counts on


def test_job_names_keep_their_seed_at_120_columns():
    long = "mistral-7b-instruct/beavertails/harmless+helpful/sft>dpo/qlora/beta=0.1/lr=5e-06/s"
    jobs = [_job(i, "FAILED", name=f"{long}{i}/eval", reason="CUDA out of memory " * 5) for i in range(3)]
    st = StudyStatus("s", Path("/x"), jobs, True, 0.0)
    lines = statusview.render_jobs(st, jobs, 120).splitlines()
    assert max(map(len, lines)) <= 120
    for i, ln in enumerate(lines[1:4]):
        assert f"s{i}/eval" in ln and "…" in ln and ln.split()[3].startswith("mistral-7b")


def test_failures_red_on_a_terminal_only(tmp_path):
    jobs = [_job(0, "COMPLETED", ended_at=NOW), _job(1, "FAILED", ended_at=NOW, reason="oom")]
    st = StudyStatus("s", Path("/x"), jobs, True, 0.0)
    plain = statusview.render_arrays(st, 120, 30, now=NOW)
    assert "\x1b[" not in plain and "\x1b[" not in statusview.render_jobs(st, jobs, 120)
    red = statusview.render_arrays(st, 120, 30, now=NOW, colour=True).splitlines()
    assert red[2].startswith(statusview.RED) and any(ln == statusview.RED + "failures (1):" + statusview.RESET
                                                     for ln in red)
    rows = statusview.render_jobs(st, jobs, 120, colour=True).splitlines()
    assert not rows[1].startswith("\x1b") and rows[2].startswith(statusview.RED)
