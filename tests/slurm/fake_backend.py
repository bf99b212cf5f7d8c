"""An in-memory scheduler behind the `Backend` interface: the proof that a new executor is one
file. Registered only by tests (tests/slurm/test_backend_conformance.py), never by the product.

It keeps its queue in this process (class attributes: `backends.get` makes a new instance per
call) and runs nothing on its own: `step()` reaps the tasks that ended and starts every queued
task that is neither held nor cancelled and whose inputs (`Group.waits_on`, the neutral job graph
launch hands every backend) all COMPLETED, each in its own process through the job side's real
entry point, exactly as a compute node would. It reads no dependency string: a wrong `waits_on`
shows as a job whose input is not done yet (tests/slurm/fake_stage.py fails then).

Requeue as a scheduler does it: `preempt(key)` sends the running task the preemption signal
(USR2, as SLURM's `--signal`); the job saves and raises `Preempted`, the task goes back to
PENDING as the same attempt with one more restart, and the next `step()` runs it again.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from alignkit.submit import journal
from alignkit.backends.base import AttemptState, Backend, Group, Key, Poll, SubmitContext, check_text, setup_lines
from alignkit.status.state import HELD_REASON

REPO = Path(__file__).resolve().parents[2]
REQUEUE_RC = 75  # the child's exit status for "preempted: saved, run me again"
_RUN = """
import signal, sys, threading
stop = threading.Event()
signal.signal(signal.SIGUSR2, lambda *_: stop.set())  # before the imports: a signal is never lost
from jobs.entry import run_job
from jobs.errors import Preempted
try:
    run_job(sys.argv[1], stop)
except Preempted:
    sys.exit(REQUEUE_RC)
""".replace("REQUEUE_RC", str(REQUEUE_RC))


@dataclass
class Task:
    job_dir: Path
    code: Path
    waits_on: list[Key]
    held: bool
    state: str = "PENDING"
    restarts: int = 0
    log: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    out: object = None  # the running attempt's output file


class _FakePoll(Poll):
    def __init__(self, attempts):
        self.attempts = attempts

    def result(self) -> tuple[dict[Key, AttemptState], list[str]]:
        out = {}
        for a in self.attempts:
            t = FakeBackend.tasks.get(a.key)
            if t is None:
                out[a.key] = AttemptState("UNKNOWN", "not known to the fake scheduler")
            else:
                why = HELD_REASON if (t.state == "PENDING" and t.held) else None
                out[a.key] = AttemptState(t.state, why, restarts=t.restarts)
        return out, []


class FakeBackend(Backend):
    name = "fake"
    script_suffix = ".fake"
    tasks: dict[Key, Task] = {}
    _ids = itertools.count(1)

    @classmethod
    def reset(cls) -> None:
        for t in cls.tasks.values():
            if t.proc is not None and t.proc.poll() is None:
                t.proc.kill()
                t.proc.wait()
        cls.tasks = {}

    def script(self, ctx: SubmitContext, group: Group, folder: Path) -> str:
        for j in group.jobs:
            check_text(j.name, f"{ctx.plan.spec_path}: job name")
        lines = ["# fake scheduler: one task per line (job id, name, inputs)", *setup_lines(ctx.plan, ctx.code)]
        return "\n".join(lines + [f"# {j.id} {j.name} after {' '.join(j.depends_on) or '-'}"
                                  for j in group.jobs]) + "\n"

    def queue(self, ctx: SubmitContext, groups: list[Group]) -> int:
        ids: dict[str, str] = {}  # placeholder -> array id of this call
        for g in groups:
            g.array_job_id = f"F{next(self._ids)}"
            if g.placeholder:
                ids[g.placeholder] = g.array_job_id
            g.resolve(ids)
            idx = {j.id: (i if len(g.jobs) > 1 else None) for i, j in enumerate(g.jobs)}
            for j in g.jobs:
                self.tasks[(g.array_job_id, idx[j.id])] = Task(ctx.sd.job(j.id), ctx.code,
                                                               list(g.waits_on.get(j.id, [])), ctx.hold)
            journal.append(ctx.sd, {"type": "submission", "token": g.token, "stage": g.stage, "name": g.name,
                                    "executor": self.name, "array_job_id": g.array_job_id, "jobs": idx,
                                    "waits_on": {k: [list(w) for w in v] for k, v in g.waits_on.items()},
                                    "hold": ctx.hold, "code": str(ctx.code), "folder": str(self.folder(ctx.sd))})
        return len(groups)

    def poll(self, sd, jr, attempts) -> Poll:
        return _FakePoll([a for a in attempts if a.executor == self.name])

    def accounting(self, attempts) -> tuple[dict[Key, AttemptState], str]:
        ended = {a.key: self.tasks[a.key] for a in attempts if a.key in self.tasks}
        return {k: AttemptState(t.state, elapsed_s=1) for k, t in ended.items() if t.state != "PENDING"}, "fake ledger"

    def kill(self, attempts) -> list[str]:
        ids = []
        for a in attempts:
            t = self.tasks.get(a.key)
            if t is not None and t.state in ("PENDING", "RUNNING"):
                t.state = "CANCELLED"
                if t.proc is not None and t.proc.poll() is None:
                    t.proc.kill()
                ids.append(a.sched_id)
        return ids

    def release(self, sd, attempts) -> list[str]:
        ids = []
        for a in attempts:
            t = self.tasks.get(a.key)
            if t is not None and t.held:
                t.held = False
                ids.append(a.sched_id)
        if ids:
            journal.append(sd, {"type": "release", "sched_ids": ids, "tokens": []})
        return ids

    @classmethod
    def preempt(cls, key: Key) -> None:
        """Preempt a running task: the signal a scheduler sends before it takes the node back."""
        t = cls.tasks[key]
        assert t.state == "RUNNING" and t.proc is not None, f"{key} is not running ({t.state})"
        t.proc.send_signal(signal.SIGUSR2)

    @classmethod
    def step(cls) -> int:
        """Reap the tasks that ended, then start every task that may start now, in queue order;
        the number started."""
        for t in cls.tasks.values():
            if t.proc is None or t.proc.poll() is None:
                continue
            rc = t.proc.returncode
            t.out.seek(0)
            t.log.append(t.out.read().decode(errors="replace"))
            t.out.close()
            t.proc, t.out = None, None
            if t.state == "CANCELLED":
                continue
            if rc == REQUEUE_RC:  # requeued: the same attempt runs again and resumes
                t.state, t.restarts = "PENDING", t.restarts + 1
            else:
                t.state = "COMPLETED" if rc == 0 else "FAILED"
        started = 0
        for t in list(cls.tasks.values()):
            ready = all(cls.tasks[w].state == "COMPLETED" for w in t.waits_on if w in cls.tasks)
            if t.state != "PENDING" or t.held or not ready:
                continue
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(t.code), str(REPO)]))
            t.out = tempfile.TemporaryFile()
            t.proc = subprocess.Popen([sys.executable, "-c", _RUN, str(t.job_dir)], stdout=t.out,
                                      stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
            t.state = "RUNNING"
            started += 1
        return started
