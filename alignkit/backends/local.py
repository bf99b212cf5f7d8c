"""This machine: one journaled submission run by a detached driver (`alignkit.submit.localrun`), only
when asked for (`--executor local` or a local profile) — never as a fallback for SLURM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from alignkit.submit import journal
from alignkit.backends import register
from alignkit.backends.base import AttemptState, Backend, Group, Key, Poll, SubmitContext, setup_lines, watchdog_s
from alignkit.contract import paths as jobfiles
from alignkit.contract.fsio import atomic_write_text

DRIVER_STOP_S = 10.0  # how long `cancel` waits for a driver with nothing left to run to exit


def _pid_alive(pid: str | None) -> bool:
    if not pid or not pid.isdigit():
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


def _driver_pid(sd, token: str) -> str | None:
    try:
        return (sd.root / "local" / f"driver-{token}.pid").read_text().strip()
    except OSError:
        return None


def driver_alive(sd, token: str) -> bool:
    return _pid_alive(_driver_pid(sd, token))


def _is_our_driver(pid: str, token: str) -> bool:
    """The pid still runs `alignkit.submit.localrun ... <token>` (pids are reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return b"alignkit.submit.localrun" in args and token.encode() in args


def start_local_driver(sd, token: str, code: Path) -> int:
    log_dir = sd.root / "local"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=f"{code}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep))
    with open(log_dir / f"driver-{token}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "alignkit.submit.localrun", str(sd.root), token],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, cwd=str(sd.root))
    atomic_write_text(log_dir / f"driver-{token}.pid", f"{proc.pid}\n")
    return proc.pid


def local_state(sd, jr, att, job_dir: Path) -> tuple[str, str | None, int | None]:
    end = jr.local_end.get(att.key)
    start = next((r for r in jr.records if r.get("type") == "local_start" and r.get("token") == att.token
                  and r.get("job") == att.job_id), None)
    elapsed = None
    if start and isinstance(start.get("time"), (int, float)):
        elapsed = int((end["time"] if end and isinstance(end.get("time"), (int, float)) else time.time())
                      - start["time"])
    if end:
        return str(end.get("state") or "UNKNOWN"), end.get("reason"), elapsed
    if att.key in jr.cancelled:
        return "CANCELLED", "cancelled", elapsed
    if start and _pid_alive(att.local_id):
        return "RUNNING", None, elapsed
    if driver_alive(sd, att.token):
        held = (sd.root / "local" / f"HOLD-{att.token}").exists()
        return "PENDING", ("held (alignkit release)" if held else None), elapsed
    if (job_dir / jobfiles.ERROR).exists():
        return "FAILED", None, elapsed
    return "CANCELLED", "the local driver stopped before this job finished", elapsed


class _LocalPoll(Poll):
    def __init__(self, sd, jr, attempts):
        self.sd, self.jr, self.attempts = sd, jr, attempts

    def result(self) -> tuple[dict[Key, AttemptState], list[str]]:
        out = {}
        for a in self.attempts:
            st, why, elapsed = local_state(self.sd, self.jr, a, self.sd.job(a.job_id))
            out[a.key] = AttemptState(st, why, elapsed)
        return out, []


@register
class LocalBackend(Backend):
    name = "local"
    # a dry run of a local profile previews the sbatch scripts a cluster would run (docs/slurm.md)
    previews_with = "slurm"

    def script(self, ctx: SubmitContext, group: Group, folder: Path) -> str:
        lines = ["#!/bin/bash", "# local executor: run by `python -m alignkit.submit.localrun` in dependency order",
                 *setup_lines(ctx.plan, ctx.code)]
        return "\n".join(lines + [f"# {j.id} {j.name}" for j in group.jobs]) + "\n"

    def queue(self, ctx: SubmitContext, groups: list[Group]) -> int:
        """Journal one submission for every group and start a detached driver that runs it."""
        todo = [j for g in groups for j in g.jobs]
        if not todo:
            return 0
        sd, plan = ctx.sd, ctx.plan
        token = uuid.uuid4().hex[:10]
        record = {"type": "submission", "token": token, "stage": "*", "name": f"ak.{plan.sweep}.local.{token}",
                  "executor": "local", "array_job_id": None, "jobs": {j.id: None for j in todo},
                  "waits_on": {j.id: [[d, None] for d in j.depends_on] for j in todo},  # job ids: DONE each
                  "hold": ctx.hold, "code": str(ctx.code), "folder": str(sd.root / "local" / "%j"),
                  "max_parallel": plan.profile.max_parallel_local,
                  "setup": setup_lines(plan, ctx.code), "signal_delay_s": plan.profile.signal_delay_s,
                  "watchdog_s": watchdog_s(plan),
                  "timeout_min": {j.id: j.resources.time_min for j in todo},
                  "gpus": {j.id: j.resources.gpus for j in todo}}
        if ctx.hold:
            atomic_write_text(sd.root / "local" / f"HOLD-{token}", "released by `alignkit release`\n")
        journal.append(sd, record)
        start_local_driver(sd, token, ctx.code)
        for g in groups:
            g.token = token
        return 0

    def poll(self, sd, jr, attempts) -> Poll:
        return _LocalPoll(sd, jr, [a for a in attempts if a.executor == self.name])

    def kill(self, attempts) -> list[str]:
        return []  # the driver stops its own jobs when it reads the cancel record

    def cancel(self, sd, attempts) -> list[str]:
        """Journal the cancel (the driver reads it within a poll and stops those jobs), then wait
        for every driver left with nothing to run to exit — a held driver included; one that
        does not exit in time is sent SIGTERM."""
        journal.append(sd, {"type": "cancel", "jobs": [a.job_id for a in attempts], "sched_ids": [],
                            "local_jobs": [a.job_id for a in attempts]})
        jr = journal.load(sd)
        for token in sorted({a.token for a in attempts}):
            left = [a for atts in jr.attempts.values() for a in atts if a.token == token
                    and a.key not in jr.cancelled and a.key not in jr.local_end]
            pid = _driver_pid(sd, token)
            if left or not pid:
                continue
            end = time.time() + DRIVER_STOP_S
            while _pid_alive(pid) and time.time() < end:
                time.sleep(0.2)
            if _pid_alive(pid) and _is_our_driver(pid, token):
                os.killpg(int(pid), signal.SIGTERM)  # its own session: the driver and its forkserver
        return []

    def release(self, sd, attempts) -> list[str]:
        tokens = sorted({a.token for a in attempts})
        for token in tokens:
            (sd.root / "local" / f"HOLD-{token}").unlink(missing_ok=True)
        if tokens:
            journal.append(sd, {"type": "release", "sched_ids": [], "tokens": tokens})
        return tokens

