"""The callable submitit runs on the compute node: one job directory in, the stage run out.

Preemption (docs/preemption.md): submitit installs a USR2 handler that checkpoints, requeues and
exits *immediately*, wherever the main thread is — mid optimizer step, mid safetensors write.
We swap it for one that only sets `stop`; training polls `stop` at step ends, saves a complete
checkpoint and raises `Preempted`; then we call submitit's original handler ourselves (it calls
`self.checkpoint` → dumps the pickle → `scontrol requeue` → exits). Stages that never poll
`stop` (eval, merge) resume from per-checkpoint results on disk, so after `watchdog_s` without
`Preempted` a watchdog re-sends the signal and the original handler runs anyway.

The login side reaches this module only through its name in alignkit/contract/entry.py (JOB_ENTRY):
the SLURM backend pickles `StageRunner`; the local executor preloads `PRELOAD` in its forkserver
and runs `run_here` in each forked job process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import submitit

from alignkit.contract import paths as jobfiles

# what the local executor's forkserver imports once (a module that is not installed is skipped by
# multiprocessing): a forked job pays for its work, not for ~7 s of imports
PRELOAD = ["torch", "transformers", "peft", "trl", "datasets", "lm_eval", "jobs.entry", "jobs.train.stage",
           "jobs.eval.stage", "jobs.merge.stage", "jobs.judge.stage"]


def run_here(job_dir: str) -> str:
    """Run the job in this process, without submitit's signal handling (the local executor's child)."""
    from jobs.entry import run_job

    return run_job(job_dir)


class StageRunner(submitit.helpers.Checkpointable):
    """Pickled once per job (it holds only settings); the job dir is its one argument."""

    def __init__(self, watchdog_s: float = 45.0):
        self.watchdog_s = watchdog_s

    def __call__(self, job_dir: str) -> str:
        env = _job_environment()
        if env is not None and env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        if env is not None:
            _link_logs(Path(job_dir), env)
        stop = threading.Event()
        guard = _StopOnSignal(stop, self.watchdog_s)
        guard.install()
        from jobs.entry import run_job  # the heavy side, imported on the compute node only
        from jobs.errors import Preempted
        try:
            return run_job(job_dir, stop)
        except Preempted:
            guard.requeue()
            raise  # only reached on ranks > 0 or without submitit (plain python): exit non-zero

    def checkpoint(self, job_dir: str) -> submitit.helpers.DelayedSubmission:
        # all state lives on disk (checkpoints/, per-checkpoint results): resubmit as is
        return submitit.helpers.DelayedSubmission(self, job_dir)


def _job_environment() -> Any:
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None  # run by hand: python -c "StageRunner()(dir)"
    try:
        return submitit.JobEnvironment()
    except Exception:  # noqa: BLE001 - not inside a submitit job
        return None


class _StopOnSignal:
    """USR2 → set `stop`; escalate to submitit's own handler on `requeue()` or after a timeout."""

    def __init__(self, stop: threading.Event, watchdog_s: float):
        self.stop = stop
        self.watchdog_s = watchdog_s
        self.signum = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))
        self.original: Callable | int | None = None
        self.escalate = False
        self._watchdog: threading.Thread | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self.original = signal.getsignal(self.signum)
        signal.signal(self.signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.escalate:
            self._call_original(signum, frame)
            return
        print(f"alignkit: got signal {signum}: asking the stage to save and stop", flush=True)
        self.stop.set()
        if self._watchdog is None and self.watchdog_s > 0:
            self._watchdog = threading.Thread(target=self._watch, daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        time.sleep(self.watchdog_s)
        print(f"alignkit: stage did not stop within {self.watchdog_s:.0f}s: requeueing now", flush=True)
        self.escalate = True
        os.kill(os.getpid(), self.signum)  # handlers run in the main thread: this interrupts it

    def requeue(self) -> None:
        self.escalate = True
        self._call_original(self.signum, None)
        rank = int(os.environ.get("SLURM_PROCID", os.environ.get("RANK", "0")))
        if rank != 0 and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            # rank 0 requeues the whole job, which ends this task too; wait for that
            while True:
                time.sleep(1)

    def _call_original(self, signum: int, frame: Any) -> None:
        if callable(self.original):
            self.original(signum, frame)  # submitit: checkpoint → requeue → sys.exit
        elif self.original == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _link_logs(job_dir: Path, env: Any) -> None:
    """jobs/<id>/logs/<submitit id>_<rank>_log.{out,err} → submitit's files of this attempt."""
    try:
        paths = env.paths
        logs = job_dir / jobfiles.LOGS
        logs.mkdir(parents=True, exist_ok=True)
        for target in (paths.stdout, paths.stderr):
            link = logs / Path(target).name
            if link.is_symlink() or link.exists():
                continue
            tmp = logs / f".{link.name}.{os.getpid()}.tmp"
            os.symlink(os.path.relpath(target, logs), tmp)
            os.replace(tmp, link)
    except OSError as exc:  # logs are a convenience: never fail the job for them
        print(f"alignkit: could not link logs into {job_dir}/logs: {exc}", flush=True)
