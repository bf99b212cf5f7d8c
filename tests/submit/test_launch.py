"""The launcher without a cluster: dependency wiring, golden sbatch scripts (dry run), the lock,
and status joined from a journal and fake sacct output."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from alignkit.submit import journal
from alignkit.submit import launch
from alignkit.status import state as status
from alignkit.backends import sacct
from alignkit.backends import slurm as slurm_backend
from alignkit.backends.slurm import sbatch_dependency
from alignkit.contract.errors import UserError
from alignkit.submit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp

GOLDEN = Path(__file__).parent / "golden"


def _chain():
    trains = [fp.job(f"t{i}", steps=1) for i in range(3)]
    evals = [fp.job(f"e{i}", stage="eval", deps=(t.id,), res=fp.resources("eval", time_min=20)) for i, t in
             enumerate(trains)]
    merge = fp.job("m", stage="merge", deps=(trains[0].id, trains[2].id), res=fp.resources("merge", time_min=10))
    return trains, evals, merge


def test_wiring_aftercorr_when_arrays_align_afterok_otherwise(tmp_path):
    trains, evals, merge = _chain()
    groups = launch._make_groups(fp.plan(tmp_path, [*evals[::-1], merge, *trains]), [*evals[::-1], merge, *trains])
    assert [g.stage for g in groups] == ["train", "merge", "eval"]
    queued, arrays = {}, {}
    for n, g in enumerate(groups):
        launch._wire(g, queued, arrays, pending={})
        for i, j in enumerate(g.jobs):
            queued[j.id] = (f"A{n}", i if len(g.jobs) > 1 else None)
        arrays[f"A{n}"] = [j.id for j in g.jobs]
    train_g, merge_g, eval_g = groups
    assert sbatch_dependency(eval_g) == "aftercorr:A0" and eval_g.elementwise == "A0"
    assert [j.depends_on[0] for j in eval_g.jobs] == [j.id for j in train_g.jobs]  # element i after train i
    assert sbatch_dependency(merge_g) == "afterok:A0_0:A0_2" and merge_g.after == [("A0", [0, 2])]
    # an eval whose train is still pending from an earlier submit waits on that task id only
    g = launch._make_groups(fp.plan(tmp_path, evals[:1]), evals[:1])[0]
    launch._wire(g, {}, {}, pending={trains[0].id: ("77", 4)})
    assert sbatch_dependency(g) == "afterok:77_4"
    # completed inputs are no dependency at all
    g = launch._make_groups(fp.plan(tmp_path, evals[:1]), evals[:1])[0]
    launch._wire(g, {}, {}, pending={})
    assert sbatch_dependency(g) is None and not g.after and g.elementwise is None


def _normalise(text: str, sweep: Path) -> str:
    text = text.replace(str(sweep), "SWEEP").replace(str(fp.REPO), "REPO")
    return re.sub(r"([.:])[0-9a-f]{10}\b", r"\1TOKEN", text)


def test_dry_run_writes_golden_sbatch_scripts(tmp_path):
    trains, evals, merge = _chain()
    res = launch.submit(fp.plan(tmp_path, [*trains, *evals, merge]), dry_run=True, hold=True)
    assert res.dry_run and res.calls == 0 and len(res.scripts) == 3
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "journal.jsonl").exists()
    for path in res.scripts:
        got = _normalise(path.read_text(), tmp_path)
        golden = GOLDEN / path.name
        if os.environ.get("ALIGNKIT_UPDATE_GOLDEN") == "1":
            golden.write_text(got)
        assert got == golden.read_text(), f"{path.name} differs from {golden} (ALIGNKIT_UPDATE_GOLDEN=1 rewrites)"
    evals_script = (tmp_path / "dry-run" / "02-eval.sbatch").read_text()
    assert "#SBATCH --array=0-2%3" in evals_script and "--dependency='aftercorr:${ARRAY_0}'" in evals_script
    assert "#SBATCH --hold" in evals_script and "#SBATCH --signal=USR2@60" in evals_script


def test_lock_refuses_a_concurrent_submit(tmp_path):
    plan = fp.plan(tmp_path, [fp.job("x")])
    with launch.submit_lock(SweepDir.of(tmp_path)):
        with pytest.raises(UserError, match="another `alignkit submit` is running"):
            launch.submit(plan, executor="local")


def _journal_two_arrays(sd: SweepDir, trains, evals, t_age: float = 0.0):
    now = time.time() - t_age
    journal.append(sd, {"type": "submission", "token": "a", "stage": "train", "executor": "slurm",
                        "array_job_id": "10", "jobs": {t.id: i for i, t in enumerate(trains)},
                        "waits_on": {}, "hold": False, "folder": str(sd.root / "slurm/%j"), "time": now})
    journal.append(sd, {"type": "submission", "token": "b", "stage": "eval", "executor": "slurm",
                        "array_job_id": "11", "jobs": {e.id: i for i, e in enumerate(evals)},
                        "waits_on": {e.id: [["10", i]] for i, e in enumerate(evals)}, "hold": False,
                        "folder": str(sd.root / "slurm/%j"), "time": now})


def fake_pending(records):
    """Stands in for sacct.Pending: the records a sacct call would have returned."""
    class FakePending:
        def __init__(self, ids, timeout_s=30.0):
            self.ids = ids

        def result(self):
            return records
    return FakePending


def _two_arrays_refreshed(tmp_path, monkeypatch, eval_reason: str):
    """trains t0 (DONE), t1 (FAILED, error.json), t2 (RUNNING) in array 10 and their evals pending in
    array 11 with sacct's `eval_reason`; returns the sweep, the refreshed status and the commands run."""
    trains, evals, _ = _chain()
    plan = fp.plan(tmp_path, [*trains, *evals])
    sd = SweepDir.of(tmp_path)
    launch.write_sweep(plan, sd)
    _journal_two_arrays(sd, trains, evals)
    (sd.job(trains[0].id) / "DONE").write_text("1\n")
    (sd.job(trains[1].id) / "error.json").write_text('{"reason": "NaN loss at step 3", "type": "JobFailure"}')
    out = ("10_0|n|COMPLETED|0:0|5|vm|None\n10_1|n|FAILED|1:0|4|vm|None\n10_2|n|RUNNING|0:0|9|vm|None\n"
           f"11_[0-2]|n|PENDING|0:0|0|None assigned|{eval_reason}\n")
    monkeypatch.setattr(sacct, "Pending", fake_pending(sacct.parse(out)))
    calls = []
    monkeypatch.setattr(slurm_backend.subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""))
    return sd, status.refresh(sd), calls


def test_status_joins_journal_sacct_and_files(tmp_path, monkeypatch):
    sd, st, cancelled = _two_arrays_refreshed(tmp_path, monkeypatch, "Dependency")
    by = {j.name: j for j in st.jobs}
    assert (by["t0"].state, by["t1"].state, by["t2"].state) == ("COMPLETED", "FAILED", "RUNNING")
    assert by["t1"].reason == "NaN loss at step 3" and by["t2"].elapsed_s == 9 and by["t2"].node == "vm"
    assert by["e1"].state == "BLOCKED" and by["e1"].reason == "dependency train t1 FAILED"
    assert by["e0"].state == by["e2"].state == "PENDING"
    assert [c for c in cancelled if c[0] == "scancel"] == [["scancel", "11_1"]]  # blocked ⇒ cancelled, once
    # e0's train is DONE: a stale `Dependency` reason gets its dependency cleared, not a wait forever
    assert [c for c in cancelled if c[0] == "scontrol"] == [["scontrol", "update", "JobId=11_0", "Dependency="]]
    assert st.summary() == {"train": {"COMPLETED": 1, "FAILED": 1, "RUNNING": 1},
                            "eval": {"BLOCKED": 1, "PENDING": 2}}
    st2 = status.refresh(sd)  # the journal remembers: no second scancel
    assert {j.name: j.state for j in st2.jobs}["e1"] == "BLOCKED"
    assert sum(c[0] == "scancel" for c in cancelled) == 1


def test_status_tolerates_sacct_lag(tmp_path, monkeypatch):
    trains, evals, _ = _chain()
    plan = fp.plan(tmp_path, trains)
    sd = SweepDir.of(tmp_path)
    launch.write_sweep(plan, sd)
    _journal_two_arrays(sd, trains, [])
    monkeypatch.setattr(sacct, "Pending", fake_pending({}))  # fresh array: header only
    st = status.refresh(sd)
    assert {j.state for j in st.jobs} == {"PENDING"}
    assert all("not in accounting yet" in j.reason for j in st.jobs)


def test_backends_are_found_by_executor_name(tmp_path):
    from alignkit import backends
    from alignkit.backends.base import Backend
    assert backends.names() == ["local", "slurm"]  # every module of the package, no list to edit
    assert type(backends.get("slurm")).__name__ == "SlurmBackend"
    with pytest.raises(UserError, match=r"unknown executor 'pbs' \(known: local, slurm\)"):
        backends.get("pbs")

    @backends.register
    class Null(Backend):  # what a new backend file holds: one registered subclass
        name = "null-test"
        script = queue = poll = kill = release = lambda *a, **k: None  # noqa: E731
    try:
        assert isinstance(backends.get("null-test"), Null)
    finally:
        backends._REGISTRY.pop("null-test")


def test_aftercorr_remainder_never_satisfied_is_rewired_not_blocked(tmp_path, monkeypatch):
    """SLURM 22.05 marks every task still in an aftercorr array's record DependencyNeverSatisfied
    once the upstream array ended with one task failed: only the eval of the failed train is
    BLOCKED (cancelled); the others wait on their own input (cleared when it is done)."""
    sd, st, calls = _two_arrays_refreshed(tmp_path, monkeypatch, "DependencyNeverSatisfied")
    by = {j.name: j for j in st.jobs}
    assert by["e1"].state == "BLOCKED" and by["e1"].reason == "dependency train t1 FAILED"
    assert by["e0"].state == by["e2"].state == "PENDING" and "own inputs" in by["e0"].reason
    assert ["scancel", "11_1"] in calls
    assert ["scontrol", "update", "JobId=11_0", "Dependency="] in calls  # its train is done
    assert ["scontrol", "update", "JobId=11_2", "Dependency=afterok:10_2"] in calls  # still running
    calls.clear()
    status.refresh(sd, cancel_blocked=False)  # `logs`: reads only
    assert calls == []
