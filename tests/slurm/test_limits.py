"""Arrays that fit the cluster, against the real dev cluster as slurm/dev-cluster/start.sh sets it
up: MaxArraySize=101, limits enforced, a QOS `small` with MaxSubmitJobsPerUser=150.

* chunks: 105 trains and their 105 evals run as arrays of 101 + 4, each eval chunk `aftercorr`
  its train chunk; a failed train blocks only its own eval, in either chunk;
* waves: a 2,000-job held study under QOS small goes through in waves of at most what may be
  queued; each wave is checked in squeue (held, within the limit), then taken out of the queue
  and its jobs marked done as if they had run (running 2,000 jobs would take this 2-core machine
  half an hour), and the next submit queues the next wave; every job is queued exactly once;
* the smoke study queues whole under the same QOS (98 jobs, held, then cancelled).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time

import pytest

from alignkit import backends
from alignkit.submit import journal
from alignkit.backends.slurm import sbatch_dependency
from alignkit.cli.main import main as cli
from alignkit.plan.compiler import load_plan
from alignkit.submit.launch import submit
from alignkit.status.state import refresh
from alignkit.submit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp
from tests.slurm.conftest import wait_for

pytestmark = pytest.mark.slurm
QOS = "small"


def _small(plan):
    plan.profile = dataclasses.replace(plan.profile, qos=QOS)
    return plan


@pytest.fixture
def limits(cluster, tmp_path):
    lim = backends.get("slurm").limits(_small(fp.plan(tmp_path, [fp.job("probe")])))
    if lim.max_array_size != 101 or not any(f"QOS {QOS}: MaxSubmitJobsPerUser=150" in n for n in lim.notes):
        pytest.fail(f"the dev cluster lacks MaxArraySize=101 / QOS {QOS} with MaxSubmitJobsPerUser=150 "
                    f"(rerun slurm/dev-cluster/start.sh): {lim}")
    return lim


def _squeue(qos: str | None = None) -> list[tuple[str, str]]:
    cmd = ["squeue", "-h", "-r", "-u", "root", "-o", "%i|%r"] + (["-q", qos] if qos else [])
    return [tuple(line.split("|", 1)) for line in subprocess.run(cmd, capture_output=True, text=True).stdout.split()]


def test_chunked_arrays_keep_element_wise_dependencies(limits, sweep):
    n = 105
    trains = [fp.job(f"c{i:03d}", steps=1, sleep_s=0, fail_at=1 if i in (3, 103) else None) for i in range(n)]
    evals = [fp.job(f"d{n - i:03d}", stage="eval", deps=(t.id,), steps=1, sleep_s=0) for i, t in enumerate(trains)]
    res = submit(fp.plan(sweep, trains + evals))
    assert [(g.stage, len(g.jobs)) for g in res.groups] == [("train", 101), ("train", 4), ("eval", 101), ("eval", 4)]
    t0, t1, e0, e1 = res.groups
    assert sbatch_dependency(e0) == f"aftercorr:{t0.array_job_id}" and sbatch_dependency(e1) == f"aftercorr:{t1.array_job_id}"
    jr = journal.load(SweepDir.of(sweep))
    for ev, tr in zip(evals, trains, strict=True):  # eval i waits on the task that runs train i
        assert jr.latest(ev.id).waits_on == [jr.latest(tr.id).key]
        assert jr.latest(ev.id).index == jr.latest(tr.id).index
    st = wait_for(lambda: (s := refresh(SweepDir.of(sweep))) and all(
        j.state in ("COMPLETED", "FAILED", "BLOCKED") for j in s.jobs) and s, 600, "210 jobs", every=5)
    by = {j.name: j for j in st.jobs}
    failed = {f"c{i:03d}" for i in (3, 103)}
    blocked = {f"d{n - i:03d}" for i in (3, 103)}
    assert {k for k, j in by.items() if j.state == "FAILED"} == failed
    assert {k for k, j in by.items() if j.state == "BLOCKED"} == blocked
    assert sum(j.state == "COMPLETED" for j in st.jobs) == 2 * n - 4  # every eval found its own train DONE


def test_2000_job_held_study_goes_through_in_waves(limits, sweep):
    trains = [fp.job(f"w{i:04d}", steps=1) for i in range(1000)]
    evals = [fp.job(f"v{i:04d}", stage="eval", deps=(t.id,), steps=1) for i, t in enumerate(trains)]
    plan = _small(fp.plan(sweep, trains + evals, sweep="waves"))
    sd = SweepDir.of(sweep)
    waves, seen = [], set()
    while True:
        t = time.perf_counter()
        res = submit(plan, hold=True)
        took = time.perf_counter() - t
        queued = [j for g in res.groups for j in g.jobs]
        if not queued:
            assert res.deferred == 0
            break
        mine = _squeue(QOS)
        waves.append({"queued": len(queued), "deferred": res.deferred, "arrays": len(res.groups),
                      "submit_s": round(took, 2), "in_qos_queue": len(mine)})
        assert len(mine) <= 150 and len(queued) <= 150 and all(len(g.jobs) <= 101 for g in res.groups)
        ours = {g.array_job_id for g in res.groups}
        assert sum(1 for jid, _ in mine if jid.split("_")[0] in ours) == len(queued)
        assert all("JobHeld" in why for jid, why in mine if jid.split("_")[0] in ours), mine
        assert not seen & {j.id for j in queued}, "a job was queued twice"
        seen |= {j.id for j in queued}
        jr = journal.load(sd)
        now = {j.id for j in queued}
        for j in queued:  # an input in this wave is waited on task by task; a done one not at all
            waited = {by_key_job(jr, k) for k in jr.latest(j.id).waits_on}
            assert waited == {d for d in j.depends_on if d in now}, j.name
        # as if the wave ran: out of the queue, DONE on disk
        subprocess.run(["scancel", *ours], check=True)
        for j in queued:
            (sd.job(j.id) / "DONE").write_text("simulated\n")
        wait_for(lambda ours=ours: not any(jid.split("_")[0] in ours for jid, _ in _squeue(QOS)), 60,
                 "wave out of squeue")
    assert seen == {j.id for j in plan.jobs}
    assert all(len(a) == 1 for a in journal.load(sd).attempts.values())
    (sweep / "waves.json").write_text(json.dumps(waves, indent=1))
    print(f"\n{len(waves)} waves: " + json.dumps(waves))
    assert len(waves) >= 2000 // 150


def test_2000_job_held_study_in_one_submit_under_the_default_qos(limits, sweep):
    """No per-user limit: all 2,000 go in one submit, as 20 arrays of at most 101 (eval chunk k
    aftercorr train chunk k), held; then cancelled."""
    trains = [fp.job(f"x{i:04d}", steps=1) for i in range(1000)]
    evals = [fp.job(f"y{i:04d}", stage="eval", deps=(t.id,), steps=1) for i, t in enumerate(trains)]
    t = time.perf_counter()
    res = submit(fp.plan(sweep, trains + evals, sweep="onego"), hold=True)
    took = time.perf_counter() - t
    sizes = [len(g.jobs) for g in res.groups]
    assert sizes == [101] * 9 + [91] + [101] * 9 + [91] and res.calls == 20 and res.deferred == 0
    tr, ev = res.groups[:10], res.groups[10:]
    assert [sbatch_dependency(g) for g in ev] == [f"aftercorr:{g.array_job_id}" for g in tr]
    ours = {g.array_job_id for g in res.groups}
    held = [why for jid, why in _squeue() if jid.split("_")[0] in ours]
    assert len(held) == 2000 and all("JobHeld" in why for why in held)
    print(f"\n2,000-job held submit (default QOS): {res.calls} sbatch calls, {took:.1f} s")
    (sweep / "timing.json").write_text(json.dumps({"submit_s": took, "sbatch_calls": res.calls}))
    assert cli(["cancel", str(sweep)]) == 0


def by_key_job(jr, key):
    att = jr.by_key().get(tuple(key))
    return att.job_id if att else None


def test_smoke_study_queues_under_the_small_qos(limits, sweep, capsys):
    plan = _small(load_plan(str(fp.REPO / "sweeps" / "smoke.yaml"), "dev", str(sweep / "smoke")))
    t = time.perf_counter()
    res = submit(plan, hold=True)
    took = time.perf_counter() - t
    queued = sum(len(g.jobs) for g in res.groups)
    assert queued + res.deferred == len(plan.jobs) == 98 and queued <= limits.max_queued
    assert all(len(g.jobs) <= 101 for g in res.groups)
    sd = SweepDir.of(sweep / "smoke")
    st = wait_for(lambda: (s := refresh(sd)) and sum(j.state == "HELD" for j in s.jobs) == queued and s,
                  60, "smoke study held")
    assert all("held" in (j.reason or "") for j in st.jobs if j.state == "HELD")
    print(f"\nsmoke: {queued} jobs in {res.calls} sbatch calls, {took:.2f} s")
    assert cli(["cancel", str(sd.root)]) == 0
    assert f"cancelled {queued} job(s)" in capsys.readouterr().out


def test_plan_with_profile_says_arrays_split_and_waves(limits, sweep, capsys):
    # sweeps/smoke.yaml elsewhere: its relative asset paths made absolute (plan reads the data)
    spec = (fp.REPO / "sweeps" / "smoke.yaml").read_text().replace("../assets/", f"{fp.REPO / 'assets'}/")
    big = sweep / "big.yaml"  # 16 seeds instead of 2: 770 jobs, arrays of up to 128
    big.write_text(spec.replace("  seed: [0, 1]\n", f"  seed: {list(range(16))}\n"))
    profile = sweep / "small.yaml"
    profile.write_text((fp.REPO / "slurm/profiles/dev.yaml").read_text().replace("qos: null", f"qos: {QOS}"))
    assert cli(["plan", str(big), "--profile", str(profile)]) == 0
    out = capsys.readouterr().out
    assert f"QOS {QOS}: MaxSubmitJobsPerUser=150" in out and "MaxArraySize=101" in out
    assert "6 group(s) exceed MaxArraySize=101: 14 arrays, each queued on its own" in out
    assert "770 jobs exceed the" in out and "submit queues them in waves" in out

