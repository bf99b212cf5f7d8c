"""Preemption by the high-priority partition and the time limit: the job saves, is requeued and
resumes from its checkpoint; steps done before the signal are not done again."""

from __future__ import annotations

import re
import subprocess

import pytest

from alignkit.submit.launch import submit
from alignkit.status.state import refresh
from alignkit.submit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp
from tests.slurm.conftest import steps_log, wait_for

pytestmark = pytest.mark.slurm


def steps_done(log: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in log if line.startswith("step ")]


def starts(log: list[str]) -> list[int]:
    return [int(re.search(r"step=(\d+)", line).group(1)) for line in log if line.startswith("start")]


def final(sd: SweepDir, timeout: float):
    def ended():
        st = refresh(sd)
        return st if st.jobs[0].state not in ("PENDING", "RUNNING", "REQUEUED", "PREEMPTED") else None
    return wait_for(ended, timeout, "job to end").jobs[0]


def test_preempted_by_urgent_partition_resumes_from_checkpoint(cluster, sweep):
    # time limit 30 min (> 10: submitit counts the USR2 as a preemption, not a timeout)
    job = fp.job("pre", steps=14, sleep_s=1.0, res=fp.resources(time_min=30))
    submit(fp.plan(sweep, [job]))
    sd, jd = SweepDir.of(sweep), sweep / "jobs" / job.id
    wait_for(lambda: len(steps_done(steps_log(jd))) >= 4, 60, "4 steps")
    cpus = subprocess.check_output(["sinfo", "-h", "-N", "-o", "%c"], text=True).split()[0]
    subprocess.check_call(["sbatch", "--parsable", "-p", "urgent", "-c", cpus, "-o", "/dev/null",
                           "--job-name", "ak-test-urgent", "--wrap", "sleep 2"], stdout=subprocess.DEVNULL)
    st = final(sd, 150)
    log = steps_log(jd)
    assert st.state == "COMPLETED", (st, log)
    assert steps_done(log) == list(range(1, 15)), log  # every step exactly once: nothing redone
    assert len(starts(log)) == 2 and starts(log)[1] >= 4, log
    assert any(line.startswith("saved step=") for line in log)
    assert st.restarts >= 1  # sacct -D shows the preempted attempt


def _outlasts_its_time_limit(sweep, job) -> None:
    """Submit a job whose first attempt outlasts its 1-minute limit (signal 45 s before it);
    it must be requeued and resume, every step done exactly once."""
    submit(fp.plan(sweep, [job], signal_delay_s=45))
    sd, jd = SweepDir.of(sweep), sweep / "jobs" / job.id
    st = final(sd, 300)
    log = steps_log(jd)
    assert st.state == "COMPLETED", (st, log)
    assert steps_done(log) == list(range(1, 31)), log
    assert len(starts(log)) >= 2 and starts(log)[1] > 0, log


def test_time_limit_requeues_and_resumes(cluster, sweep):
    # slurmctld sends the time-limit signal from a periodic (30 s) sweep, so when it lands in the
    # attempt varies by tens of seconds: the first attempt outlasts it
    _outlasts_its_time_limit(sweep, fp.job("tl", steps=30, sleep_s=1.0, outlast_first_attempt=True,
                                           res=fp.resources(time_min=1)))


def test_stage_that_ignores_stop_is_requeued_by_the_watchdog(cluster, sweep):
    # an eval-like stage never polls `stop`; per-step results on disk are its checkpoint. The
    # runner's watchdog (signal_delay_s // 4 = 11 s) requeues it anyway, before the time limit.
    _outlasts_its_time_limit(sweep, fp.job("wd", stage="eval", steps=30, sleep_s=1.0, poll=False,
                                           outlast_first_attempt=True, res=fp.resources("eval", time_min=1)))
