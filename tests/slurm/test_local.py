"""The local executor: same jobs, same runner, dependency order, bounded parallelism, BLOCKED,
status/cancel from the journal, and no fallback from SLURM to this machine — no SLURM needed."""

from __future__ import annotations

import json

import pytest

from alignkit.submit import launch
from alignkit.backends import slurm as slurm_backend
from alignkit.cli.main import main as cli
from alignkit.contract.errors import UserError
from alignkit.submit.launch import submit
from alignkit.status.state import refresh
from alignkit.submit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp
from tests.slurm.conftest import steps_log, wait_for

ENDED = ("COMPLETED", "FAILED", "BLOCKED", "CANCELLED")


def test_local_executor_runs_in_dependency_order_with_bounded_parallelism(sweep):
    trains = [fp.job(f"lt{i}", steps=2, sleep_s=0.5, fail_at=1 if i == 1 else None) for i in range(3)]
    evals = [fp.job(f"le{i}", stage="eval", deps=(t.id,), steps=1) for i, t in enumerate(trains)]
    plan = fp.plan(sweep, trains + evals, profile="local", max_parallel_local=2)
    res = submit(plan, executor="local")
    assert res.executor == "local" and res.calls == 0
    sd = SweepDir.of(sweep)
    st = wait_for(lambda: (s := refresh(sd)) and all(j.state in ENDED for j in s.jobs) and s, 120, "local jobs")
    by = {j.name: j for j in st.jobs}
    assert by["lt1"].state == "FAILED" and by["lt1"].reason == "fake failure at step 1"
    assert by["le1"].state == "BLOCKED" and "lt1" in by["le1"].reason
    assert all(by[n].state == "COMPLETED" for n in ("lt0", "lt2", "le0", "le2"))
    spans = []
    for j in trains + evals:
        log = steps_log(sweep / "jobs" / j.id)
        if log:
            end = sweep / "jobs" / j.id / "fake.json"
            spans.append((float(log[0].rsplit(" t=", 1)[1]),
                          json.loads(end.read_text())["end"] if end.exists() else float("inf")))
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) <= 2
    # idempotent here too: only the failed train and its blocked eval go again
    res2 = submit(plan, executor="local")
    assert sorted(j.name for g in res2.groups for j in g.jobs) == ["le1", "lt1"]
    wait_for(lambda: all(j.state in ENDED for j in refresh(sd).jobs), 120, "second local run")


def test_no_controller_refuses_slurm_and_never_runs_locally(sweep, monkeypatch, capsys):
    """--executor slurm without a controller: exit 2, one line, nothing written, nothing run."""
    monkeypatch.setattr(slurm_backend, "slurm_answers", lambda timeout_s=10.0: False)
    plan = fp.plan(sweep / "out", [fp.job("fb", steps=1)], profile="dev")
    with pytest.raises(UserError, match="no SLURM controller answers `scontrol ping`; nothing queued"):
        launch.submit(plan)
    with pytest.raises(UserError, match="--executor slurm"):
        launch.choose_executor(plan, "slurm")
    assert not (sweep / "out").exists()
    spec = fp.REPO / "sweeps" / "smoke.yaml"
    assert cli(["submit", str(spec), "--profile", "dev", "-o", str(sweep / "cli"), "--skip-preflight"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no SLURM controller answers" in err[0] and "--executor local" in err[0], err
    assert not (sweep / "cli").exists()


def test_cancel_of_a_held_local_submission_stops_its_driver(sweep, capsys):
    jobs = [fp.job(f"lh{i}", steps=1) for i in range(2)]
    res = submit(fp.plan(sweep, jobs, profile="local"), executor="local", hold=True)
    sd = SweepDir.of(sweep)
    token = res.groups[0].token
    pid = int((sweep / "local" / f"driver-{token}.pid").read_text())
    st = wait_for(lambda: (s := refresh(sd)) and all(j.reason == "held (alignkit release)" for j in s.jobs) and s,
                  30, "held local jobs")
    assert {j.state for j in st.jobs} == {"HELD"}
    assert cli(["cancel", str(sweep)]) == 0
    assert "cancelled 2 job(s)" in capsys.readouterr().out
    assert not _alive(pid), "the held driver must be gone when cancel returns"
    assert {j.state for j in refresh(sd).jobs} == {"CANCELLED"}
    assert not any(steps_log(sweep / "jobs" / j.id) for j in jobs)  # nothing ran


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False
