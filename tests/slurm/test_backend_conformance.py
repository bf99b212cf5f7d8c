"""What every executor promises, run over every registered backend and the in-memory fake one
(tests/slurm/fake_backend.py): a dry run writes one script per array and queues nothing; submit
queues a job graph whose dependencies hold (each fake-stage job checks its inputs are DONE); a
failed input blocks what waits on it; collect reads the executor's accounting; status reads held jobs as HELD; release starts them,
cancel stops them and a later submit queues only what did not complete; a preempted job is
requeued as the same attempt and resumes from its checkpoint, every step done once.

A new backend passes this suite with one entry in HARNESS: how to let its queue move on, and
how its scheduler preempts a running attempt (None: it never does — the local executor's jobs
own this machine, so nothing takes their CPUs back and nothing requeues them).
SLURM needs the dev cluster (the `cluster` fixture: skipped without one, a failure under CI).
"""

from __future__ import annotations

import subprocess
import time

import pytest

from alignkit import backends
from alignkit.submit import journal
from alignkit.backends.base import SubmitContext
from alignkit.cli.main import main as cli
from alignkit.collect.study import load_study
from alignkit.submit.launch import submit
from alignkit.status.state import refresh
from alignkit.submit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp
from tests.slurm.conftest import steps_log, wait_for
from tests.slurm.fake_backend import FakeBackend

ENDED = ("COMPLETED", "FAILED", "BLOCKED", "CANCELLED")


def _wait(tick):
    def until(pred, timeout: float, what: str):
        def moved():
            tick()
            return pred()
        return wait_for(moved, timeout, what, every=0.5)
    return until


def _slurm_preempt(att) -> None:
    # what a preempting partition or the time limit does first: the `--signal` (USR2) to the job's
    # steps; submitit's handler then requeues the job (scontrol requeue), restart count + 1
    subprocess.run(["scancel", "--signal=USR2", att.sched_id], check=True, capture_output=True, timeout=60)


# name -> (fixtures it needs, how its queue moves on between two looks at it,
#          how its scheduler preempts a running attempt or None)
HARNESS = {
    "slurm": (("cluster",), lambda: time.sleep(0.5), _slurm_preempt),
    "local": ((), lambda: time.sleep(0.5), None),
    "fake": ((), FakeBackend.step, lambda att: FakeBackend.preempt(att.key)),
}
ALL = [*backends.names(), "fake"]


def _use(request, monkeypatch, name: str) -> str:
    if name not in HARNESS:
        pytest.fail(f"backend '{name}' has no conformance harness: add its entry to HARNESS")
    if name == "fake":  # registered for this test only: the product's executor list stays its own
        monkeypatch.setitem(backends._REGISTRY, "fake", FakeBackend)
        FakeBackend.reset()
    for fixture in HARNESS[name][0]:
        request.getfixturevalue(fixture)
    return name


@pytest.fixture(params=ALL)
def executor(request, monkeypatch) -> str:
    return _use(request, monkeypatch, request.param)


@pytest.fixture(params=[n for n in ALL if n not in HARNESS or HARNESS[n][2] is not None])
def preemptible(request, monkeypatch) -> str:
    return _use(request, monkeypatch, request.param)


def _settle(sd: SweepDir, executor: str, timeout: float = 180):
    until = _wait(HARNESS[executor][1])
    return until(lambda: (s := refresh(sd)) and all(j.state in ENDED for j in s.jobs) and s, timeout,
                 f"jobs of {sd.root} to end")


def test_fake_backend_is_not_registered_by_the_product():
    assert "fake" not in backends.names()


def test_dry_run_writes_the_scripts_and_queues_nothing(executor, sweep):
    trains = [fp.job(f"dt{i}", steps=1) for i in range(2)]
    evals = [fp.job(f"de{i}", stage="eval", deps=(t.id,), steps=1) for i, t in enumerate(trains)]
    plan = fp.plan(sweep, [*trains, *evals])
    res = submit(plan, executor=executor, dry_run=True, hold=True)
    assert res.dry_run and res.calls == 0 and len(res.scripts) == len(res.groups) == 2
    assert not (sweep / "journal.jsonl").exists() and not (sweep / "manifest.json").exists()
    backend = backends.get(executor)
    writer = backends.get(backend.previews_with or executor)
    sd = SweepDir.of(sweep)
    ctx = SubmitContext(plan, sd, sd.code, True, {})
    for n, (path, g) in enumerate(zip(res.scripts, res.groups, strict=True)):
        assert path == sweep / "dry-run" / f"{n:02d}-{g.stage}{writer.script_suffix}"
        assert path.read_text() == g.script == writer.script(ctx, g, writer.folder(sd))
    assert [g.stage for g in res.groups] == ["train", "eval"]
    assert {j.id for j in res.groups[1].jobs} == {e.id for e in evals}


def test_dependencies_hold_and_a_failed_input_blocks(executor, sweep):
    trains = [fp.job(f"ct{i}", steps=1, sleep_s=0.2, fail_at=1 if i == 2 else None) for i in range(3)]
    evals = [fp.job(f"ce{i}", stage="eval", deps=(t.id,), steps=1) for i, t in enumerate(trains)]
    merge = fp.job("cm", stage="merge", deps=(trains[0].id, trains[1].id), steps=1)
    res = submit(fp.plan(sweep, [*trains, *evals, merge]), executor=executor)
    assert res.executor == executor
    assert sorted(j.name for g in res.groups for j in g.jobs) == sorted(j.name for j in [*trains, *evals, merge])
    st = _settle(SweepDir.of(sweep), executor)
    by = {j.name: j for j in st.jobs}
    # every input was DONE when its consumer started (fake_stage fails otherwise)
    assert all(by[n].state == "COMPLETED" for n in ("ct0", "ct1", "ce0", "ce1", "cm")), \
        {n: (j.state, j.reason) for n, j in by.items()}
    assert by["ct2"].state == "FAILED" and by["ct2"].reason == "fake failure at step 1"
    assert by["ce2"].state == "BLOCKED" and "ct2" in by["ce2"].reason
    assert not (sweep / "jobs" / evals[2].id / "steps.log").exists()  # never started
    # collect reads state and elapsed time through the executor's own accounting, if it keeps one
    ran = ("ct0", "ct1", "ct2", "ce0", "ce1", "cm")
    atts = [j.attempt for j in st.jobs if j.name in ran]
    if backends.get(executor).accounting(atts) is None:
        study = load_study(sweep)
        assert study.accounting == "no submissions with scheduler accounting in the journal"
        assert all(j.slurm_state is None and j.elapsed_s is None for j in study.jobs.values())
        return
    def accounted():  # SLURM's accounting may lag the jobs by a few seconds
        s = load_study(sweep)
        return s if all(j.slurm_state for j in s.jobs.values() if j.name in ran) else None
    study = wait_for(accounted, 60, "accounting of every job that ran")
    assert study.accounting == backends.get(executor).accounting(atts)[1]
    by = {j.name: j for j in study.jobs.values()}
    assert by["ct2"].slurm_state == "FAILED" and by["ct0"].slurm_state == "COMPLETED"
    assert all(by[n].elapsed_s is not None and by[n].elapsed_s >= 0 for n in ran)


def test_hold_release_cancel_and_resubmit(executor, sweep, capsys):
    jobs = [fp.job(f"h{i}", steps=1, sleep_s=0.2) for i in range(2)]
    plan = fp.plan(sweep, jobs)
    submit(plan, executor=executor, hold=True)
    sd = SweepDir.of(sweep)
    until = _wait(HARNESS[executor][1])
    until(lambda: {j.state for j in refresh(sd).jobs} == {"HELD"}, 60, "both jobs HELD")
    assert cli(["release", str(sweep), "h0"]) == 0
    assert cli(["cancel", str(sweep), "h1"]) == 0
    st = _settle(sd, executor)
    by = {j.name: j for j in st.jobs}
    assert (by["h0"].state, by["h1"].state) == ("COMPLETED", "CANCELLED")
    assert not (sweep / "jobs" / jobs[1].id / "steps.log").exists()  # cancelled before it ran
    res = submit(plan, executor=executor)  # the cancelled job goes again, the completed one not
    assert [j.name for g in res.groups for j in g.jobs] == ["h1"]
    st = _settle(sd, executor)
    assert {j.state for j in st.jobs} == {"COMPLETED"}


def test_every_backend_says_whether_its_scheduler_preempts():
    assert set(ALL) <= set(HARNESS), f"no HARNESS entry for {sorted(set(ALL) - set(HARNESS))}"
    assert HARNESS["fake"][2] is not None and HARNESS["slurm"][2] is not None  # the suite runs requeue somewhere


def test_a_preempted_job_is_requeued_and_resumes(preemptible, sweep):
    job = fp.job("rq", steps=12, sleep_s=0.5)
    submit(fp.plan(sweep, [job]), executor=preemptible)
    sd, jd = SweepDir.of(sweep), sweep / "jobs" / job.id
    until = _wait(HARNESS[preemptible][1])
    until(lambda: sum(line.startswith("step ") for line in steps_log(jd)) >= 3, 120, "3 steps done")
    att = journal.load(sd).latest(job.id)
    HARNESS[preemptible][2](att)
    st = _settle(sd, preemptible)
    log = steps_log(jd)
    done = [int(line.split()[1]) for line in log if line.startswith("step ")]
    starts = [int(line.split("step=")[1].split()[0]) for line in log if line.startswith("start")]
    assert st.jobs[0].state == "COMPLETED", (st.jobs[0], log)
    assert done == list(range(1, 13)), log  # every step exactly once: nothing redone, nothing lost
    assert len(starts) == 2 and starts[1] >= 3 and any(line.startswith("saved step=") for line in log), log
    assert st.jobs[0].restarts >= 1  # the scheduler counts the requeue
    assert [a.key for a in journal.load(sd).attempts[job.id]] == [att.key]  # requeued, not resubmitted
