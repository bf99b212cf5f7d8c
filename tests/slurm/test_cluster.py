"""Submission, dependencies, failure, blocking, idempotent resubmit, hold/release/cancel, logs, a
killed submit — against the real dev cluster."""

from __future__ import annotations

import json
import subprocess

import pytest

from alignkit.submit import journal
from alignkit.backends import sacct
from alignkit.backends.slurm import sbatch_dependency
from alignkit.cli.main import main as cli
from alignkit.submit.launch import submit
from alignkit.status.state import refresh
from alignkit.submit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp
from tests.slurm.conftest import sacct_rows, steps_log, wait_for

pytestmark = pytest.mark.slurm
ENDED = ("COMPLETED", "FAILED", "BLOCKED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")


def settle(sd: SweepDir, timeout: float = 120, stage: str | None = None):
    def ended():
        st = refresh(sd)
        return st if all(j.state in ENDED for j in st.jobs if stage in (None, j.stage)) else None
    return wait_for(ended, timeout, f"jobs of {sd.root} to end")


def test_array_throttle(cluster, sweep):
    jobs = [fp.job(f"thr{i}", steps=1, sleep_s=3, res=fp.resources(throttle=2)) for i in range(4)]
    res = submit(fp.plan(sweep, jobs))
    assert res.calls == 1 and len(res.groups) == 1
    script = next((sweep / "slurm").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --array=0-3%2" in script
    st = settle(SweepDir.of(sweep))
    assert {j.state for j in st.jobs} == {"COMPLETED"}
    spans = []
    for j in jobs:
        start = float(steps_log(sweep / "jobs" / j.id)[0].rsplit(" t=", 1)[1])
        end = json.loads((sweep / "jobs" / j.id / "fake.json").read_text())["end"]
        spans.append((start, end))
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2, spans  # 8 slots free, the throttle allows 2 at a time


def test_chain_failure_blocks_eval_and_resubmit_is_idempotent(cluster, sweep, capsys):
    trains = [fp.job(f"tr{i}", steps=2, sleep_s=0.5, fail_at=2 if i == 1 else None) for i in range(3)]
    evals = [fp.job(f"ev{i}", stage="eval", deps=(t.id,), steps=1) for i, t in enumerate(trains)]
    plan = fp.plan(sweep, trains + evals)
    res = submit(plan)
    assert res.calls == 2
    assert sbatch_dependency(res.groups[1]) == f"aftercorr:{res.groups[0].array_job_id}"
    sd = SweepDir.of(sweep)
    st = settle(sd)
    by = {j.name: j for j in st.jobs}
    assert by["tr1"].state == "FAILED" and by["tr1"].reason == "fake failure at step 2"
    assert by["ev1"].state == "BLOCKED" and "tr1 FAILED" in by["ev1"].reason
    assert [by[n].state for n in ("tr0", "tr2", "ev0", "ev2")] == ["COMPLETED"] * 4
    # the blocked eval was really cancelled in SLURM (not left pending forever)
    ev_arr = res.groups[1].array_job_id
    wait_for(lambda: any(r.startswith(f"{ev_arr}_1|CANCELLED") for r in sacct_rows([ev_arr])), 30, "ev1 CANCELLED")

    # status --json and logs through the CLI
    assert cli(["status", str(sweep), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"] == {"train": {"COMPLETED": 2, "FAILED": 1}, "eval": {"BLOCKED": 1, "COMPLETED": 2}}
    assert cli(["logs", "tr1", "-d", str(sweep), "--stage", "train"]) == 0
    assert "fake failure at step 2" in capsys.readouterr().out
    assert cli(["status", str(sweep), "--failed"]) == 0
    text = capsys.readouterr().out
    assert "tr1" in text and "tr0" not in text and "2 COMPLETED" in text

    # resubmit: only the failed train and its blocked eval go again; eval waits on the new train
    res2 = submit(plan)
    again = sorted(j.name for g in res2.groups for j in g.jobs)
    assert again == ["ev1", "tr1"] and res2.skipped == {"COMPLETED": 4}
    assert sbatch_dependency(res2.groups[1]) == f"afterok:{res2.groups[0].array_job_id}"
    res3 = submit(plan)  # right away: both are pending/running now
    assert res3.calls == 0 and not res3.groups
    st = settle(sd)
    by = {j.name: j for j in st.jobs}
    assert by["tr1"].state == "FAILED" and by["ev1"].state == "BLOCKED" and by["tr1"].attempts == 2
    for name in ("tr0", "tr2", "ev0", "ev2"):  # ran exactly once
        assert sum(1 for line in steps_log(sweep / "jobs" / by[name].id) if line.startswith("start")) == 1
    arrays = sorted(journal.load(sd).array_ids())
    # slurmdbd records a pending job cancelled through its dependency a moment after scancel: wait for it
    def recorded():
        rows = sacct_rows(arrays)
        return rows if len(rows) >= 8 else None
    rows = wait_for(recorded, 30, "8 accounting rows")
    ids = [r.split("|")[0] for r in rows]
    assert len(ids) == len(set(ids)) == 8, rows  # 6 + 2 resubmitted, no duplicates


def test_hold_release_cancel(cluster, sweep, capsys, monkeypatch):
    jobs = [fp.job(f"h{i}", steps=1, sleep_s=0.2) for i in range(2)]
    res = submit(fp.plan(sweep, jobs), hold=True)
    sd = SweepDir.of(sweep)
    arr = res.groups[0].array_job_id
    def held():
        s = refresh(sd)
        return s if all(j.reason and "held" in j.reason for j in s.jobs) else None
    st = wait_for(held, 30, "held in sacct")
    assert {j.state for j in st.jobs} == {"HELD"}  # its own state (issue 22 item 5), not PEND
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "160")  # wide enough for the ETA column (an xdist worker has no terminal)
    assert cli(["status", str(sweep)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[1:7] == ["DONE", "RUN", "PEND", "HELD", "FAIL", "TODO"]
    fields = out[2].split()
    bar = next(i for i, f in enumerate(fields) if f.startswith("["))
    assert fields[bar - 6:bar] == ["0", "0", "0", "2", "0", "0"] and out[2].endswith("held"), out
    assert cli(["release", str(sweep), "h0"]) == 0
    assert cli(["cancel", str(sweep), "h1"]) == 0
    st = settle(sd)
    by = {j.name: j for j in st.jobs}
    assert by["h0"].state == "COMPLETED"
    assert by["h1"].state == "CANCELLED"
    # SLURM really cancelled it (sacct may take a few seconds to show the task's own row)
    wait_for(lambda: (rec := sacct.query([arr]).get((arr, 1))) and rec.state == "CANCELLED", 60, "h1 CANCELLED")
    res2 = submit(fp.plan(sweep, jobs))  # a cancelled job is resubmitted, the completed one not
    assert [j.name for g in res2.groups for j in g.jobs] == ["h1"]
    st = settle(sd)
    assert {j.state for j in st.jobs} == {"COMPLETED"}


def test_submit_killed_before_journaling_leaves_no_duplicates(cluster, sweep, monkeypatch):
    jobs = [fp.job(f"k{i}", steps=1, sleep_s=2) for i in range(3)]
    plan = fp.plan(sweep, jobs)
    real_append = journal.append

    def die_on_submission(sd, record):
        if record.get("type") == "submission":
            raise KeyboardInterrupt  # like SIGKILL right after sbatch: no rollback, no journal record
        return real_append(sd, record)

    monkeypatch.setattr(journal, "append", die_on_submission)
    with pytest.raises(KeyboardInterrupt):
        submit(plan)
    monkeypatch.setattr(journal, "append", real_append)
    sd = SweepDir.of(sweep)
    assert journal.load(sd).pending_intents  # sbatch ran, the submission was never journaled
    res = submit(plan)
    assert res.calls == 0, "the killed submit's array must be found, not queued again"
    jr = journal.load(sd)
    assert not jr.pending_intents and len(jr.array_ids()) == 1
    st = settle(sd)
    assert {j.state for j in st.jobs} == {"COMPLETED"}
    for j in jobs:
        assert sum(1 for line in steps_log(sweep / "jobs" / j.id) if line.startswith("start")) == 1


def test_failed_sbatch_rolls_back_the_arrays_of_the_call(cluster, sweep):
    ok = fp.job("rb-ok", steps=1, sleep_s=30)
    bad = fp.job("rb-bad", stage="eval", deps=(ok.id,), steps=1, res=fp.resources(gpus=64))  # no such node
    from alignkit.contract.errors import UserError
    with pytest.raises(UserError, match="sbatch failed"):
        submit(fp.plan(sweep, [ok, bad]))
    sd = SweepDir.of(sweep)
    jr = journal.load(sd)
    assert not jr.attempts and any(r["type"] == "rollback" for r in jr.records)
    arr = next(r for r in jr.records if r["type"] == "rollback")["array_job_ids"][0]
    wait_for(lambda: any("CANCELLED" in r for r in sacct_rows([arr])), 30, "rolled-back array cancelled")
    out = subprocess.run(["squeue", "-h", "-j", arr], capture_output=True, text=True).stdout
    assert "PD" not in out and " R " not in out


def test_merges_wait_only_on_their_own_inputs(cluster, sweep):
    """One array of merges, each needing two different trains: a failed train blocks only the merge
    that uses it (each element's dependency is narrowed to its own inputs)."""
    trains = [fp.job(f"in{i}", steps=1, sleep_s=0.3, fail_at=1 if i == 0 else None) for i in range(4)]
    merges = [fp.job("mA", stage="merge", deps=(trains[0].id, trains[1].id), steps=1),
              fp.job("mB", stage="merge", deps=(trains[2].id, trains[3].id), steps=1)]
    res = submit(fp.plan(sweep, trains + merges))
    assert res.calls == 2
    st = settle(SweepDir.of(sweep))
    by = {j.name: j for j in st.jobs}
    assert by["in0"].state == "FAILED"
    assert by["mA"].state == "BLOCKED" and "in0 FAILED" in by["mA"].reason
    assert by["mB"].state == "COMPLETED"
