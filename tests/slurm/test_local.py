"""The local executor: same jobs, same runner, dependency order, bounded parallelism, BLOCKED,
and status/cancel from the journal — no SLURM needed."""

from __future__ import annotations

import json

from alignkit import launch
from alignkit.launch import submit
from alignkit.status import refresh
from alignkit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp
from tests.slurm.conftest import steps_log, wait_for

ENDED = ("COMPLETED", "FAILED", "BLOCKED", "CANCELLED")


def test_local_executor_runs_in_dependency_order_with_bounded_parallelism(sweep):
    trains = [fp.job(f"lt{i}", steps=2, sleep_s=0.5, fail_at=1 if i == 1 else None) for i in range(3)]
    evals = [fp.job(f"le{i}", stage="eval", deps=(t.id,), steps=1) for i, t in enumerate(trains)]
    plan = fp.plan(sweep, trains + evals, profile="local", max_parallel_local=2)
    res = submit(plan, executor="local")
    assert res.executor == "local" and res.sbatch_calls == 0
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


def test_no_controller_falls_back_to_local_with_a_warning(sweep, monkeypatch):
    monkeypatch.setattr(launch, "slurm_answers", lambda timeout_s=10.0: False)
    plan = fp.plan(sweep, [fp.job("fb", steps=1)], profile="dev")
    executor, notes = launch.choose_executor(plan, None)
    assert executor == "local" and "no SLURM controller answers" in notes[0]
