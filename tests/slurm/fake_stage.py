"""A test stage for the submission layer: counts steps in files, polls `stop` like training does.

Config (under "fake"): steps, sleep_s, fail_at (raise JobFailure at that step), poll (check `stop`
at step ends; False = an eval-like stage that never does), outlast_first_attempt (the first
attempt does not end by itself: it must be signalled and requeued), needs (job ids whose DONE must exist
when this starts: checks the scheduler honoured the dependency). Every (re)start appends
"start step=K restart=R" to steps.log and every step "step K", so a test can assert that steps
done before a preemption are not done again.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from alignkit.contract.fsio import atomic_write_json, read_json
from jobs.errors import JobFailure, Preempted


def _log(job_dir: Path, line: str) -> None:
    with open(job_dir / "steps.log", "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def run(job_dir: Path, config: dict, stop: threading.Event) -> None:
    fake = config["fake"]
    for dep in fake.get("needs", []):
        if not (job_dir.parent / dep / "DONE").exists():
            raise JobFailure(f"input {dep} is not done: dependency not honoured")
    ckpt = job_dir / "ckpt.json"
    if fake.get("poll", True):
        start = read_json(ckpt)["step"] if ckpt.exists() else 0
    else:  # like eval: per-step results on disk are the checkpoint (never polls `stop`)
        start = len(list(job_dir.glob("result-*")))
    restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    _log(job_dir, f"start step={start} restart={restart} t={time.time():.2f}")
    steps = int(fake.get("steps", 1))
    for step in range(start + 1, steps + 1):
        time.sleep(float(fake.get("sleep_s", 0.1)))
        _log(job_dir, f"step {step}")
        if not fake.get("poll", True):
            atomic_write_json(job_dir / f"result-{step}", {"step": step})
        atomic_write_json(job_dir / "progress.json", {"step": step, "max_steps": steps, "loss": 1.0 / step,
                                                      "updated_at": time.time()})
        if fake.get("fail_at") == step:
            raise JobFailure(f"fake failure at step {step}")
        if fake.get("poll", True) and stop.is_set() and step < steps:
            atomic_write_json(ckpt, {"step": step})
            _log(job_dir, f"saved step={step}")
            raise Preempted(f"stopped at step {step}")
    if fake.get("outlast_first_attempt") and restart == "0":
        # a job longer than its time limit, whenever SLURM's periodic sweep sends the signal: the
        # first attempt never finishes by itself (it waits for `stop`, or for the watchdog)
        _log(job_dir, "waiting for the signal")
        while not (fake.get("poll", True) and stop.is_set()):
            time.sleep(0.2)
        atomic_write_json(ckpt, {"step": steps})
        _log(job_dir, f"saved step={steps}")
        raise Preempted(f"stopped after step {steps}")
    atomic_write_json(job_dir / "fake.json", {"steps": steps, "end": time.time()})
