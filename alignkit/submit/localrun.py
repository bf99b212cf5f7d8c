"""The local executor's driver: `python -m alignkit.submit.localrun <sweep_dir> <token>`.

`alignkit submit --executor local` journals one submission and starts this process detached, so
submit returns at once as on SLURM. It runs that submission's jobs in dependency order, at most
`max_parallel` at a time; a job whose dependency failed is BLOCKED; one that outlives its time
limit is stopped (TIMEOUT). Each job runs `run_here` of the job entry (alignkit/contract/entry.py:
jobs/runner.py) in a process forked from a forkserver that imported its PRELOAD list (torch,
transformers, TRL, PEFT, lm-eval and the stages) once: a job pays for its
work, not for ~7 s of imports (on 2 cores that made the smoke study about twice as fast as one
fresh interpreter per job). Logs go where submitit's local executor puts them
(<folder>/<pid>/<pid>_0_log.{out,err}), so `alignkit logs` and status read them alike. It journals
local_start/local_end records that `alignkit status` reads, honours `alignkit cancel` (cancel
records) and `--hold` (waits while local/HOLD-<token> exists), and exits when all are done.
"""

from __future__ import annotations

import multiprocessing
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

from alignkit.submit import journal
from alignkit.contract import entry
from alignkit.contract import paths as jobfiles
from alignkit.submit.sweepdir import SweepDir


def _cancelled_since(records: list, token: str) -> set[str]:
    """Job ids named by `cancel` records journaled after this driver's submission: a cancel of an
    earlier attempt must not stop the resubmitted one."""
    out: set[str] = set()
    mine = False
    for r in records:
        if not isinstance(r, dict):
            continue
        if r.get("type") == "submission" and r.get("token") == token:
            mine = True
        elif mine and r.get("type") == "cancel" and isinstance(r.get("local_jobs"), list):
            out |= {j for j in r["local_jobs"] if isinstance(j, str)}
    return out


def _apply_exports(setup: list[str]) -> None:
    """The profile's `export NAME=VALUE` setup lines, applied to this process's environment (other
    setup lines, such as module loads, concern cluster nodes and are skipped locally)."""
    for line in setup:
        parts = shlex.split(line, comments=True)
        if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
            name, value = parts[1].split("=", 1)
            os.environ[name] = os.path.expandvars(value.replace("${PYTHONPATH:+:$PYTHONPATH}", ":$PYTHONPATH"))
    # the forkserver inherits this process's sys.path, not PYTHONPATH: put its entries first
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = entries + [p for p in sys.path if p not in entries]


def _log_dir(folder: str, pid: int) -> Path:
    return Path(folder.replace("%j", str(pid)))


def _run_child(job_dir: str, folder: str) -> None:
    """In the forked child: send output to the job's log files, run the job, exit 0/1."""
    pid = os.getpid()
    logs = _log_dir(folder, pid)
    logs.mkdir(parents=True, exist_ok=True)
    for fd, name in ((1, f"{pid}_0_log.out"), (2, f"{pid}_0_log.err")):
        # 0o666: the kernel applies the umask (a group study under umask 002 gets group-writable logs)
        f = os.open(logs / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        os.dup2(f, fd)
        os.close(f)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        print(entry.runner().run_here(job_dir), flush=True)
    except BaseException:  # the traceback goes to the job's stderr; error.json has the one-line reason
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _Local:
    """A running local job: its process, when it started, its time limit."""

    def __init__(self, proc: multiprocessing.process.BaseProcess, limit_s: float, folder: str):
        self.proc, self.start, self.limit_s, self.folder = proc, time.time(), limit_s, folder

    def done(self) -> bool:
        return self.proc.exitcode is not None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join()

    @property
    def stderr(self) -> Path:
        return _log_dir(self.folder, self.proc.pid or 0) / f"{self.proc.pid}_0_log.err"


def drive(sd: SweepDir, token: str, poll_s: float = 0.5) -> int:
    record = next(r for r in sd.read_journal() if isinstance(r, dict) and r.get("type") == "submission"
                  and r.get("token") == token)
    _apply_exports(record.get("setup", []))
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(entry.runner().PRELOAD)
    todo: list[str] = list(record["jobs"])
    waits = {j: [w[0] for w in record["waits_on"].get(j, [])] for j in todo}
    names = {j["id"]: j["name"] for j in sd.load_manifest()["jobs"]}
    hold = sd.root / "local" / f"HOLD-{token}"
    running: dict[str, _Local] = {}
    ended: dict[str, str] = {}

    def end(job_id: str, state: str, reason: str | None = None) -> None:
        ended[job_id] = state
        journal.append(sd, {"type": "local_end", "job": job_id, "token": token, "state": state, "reason": reason})

    while len(ended) < len(todo):
        cancelled = _cancelled_since(sd.read_journal(), token)
        for job_id, job in list(running.items()):
            if job_id in cancelled:
                job.stop()
                del running[job_id]
                end(job_id, "CANCELLED", "cancelled")
            elif not job.done() and time.time() - job.start > job.limit_s:
                job.stop()
                del running[job_id]
                end(job_id, "TIMEOUT", f"time limit of {job.limit_s / 60:g} min reached")
            elif job.done():
                del running[job_id]
                if (sd.job(job_id) / jobfiles.DONE).exists():
                    end(job_id, "COMPLETED")
                else:
                    end(job_id, "FAILED", _reason(sd, job_id, job))
        for job_id in todo:  # held or not: a cancelled job that never started ends now, so a
            if job_id in cancelled and job_id not in ended and job_id not in running:  # held driver
                end(job_id, "CANCELLED", "cancelled")  # with nothing left exits (alignkit cancel)
        if hold.exists() and len(ended) < len(todo):
            time.sleep(poll_s)
            continue
        for job_id in todo:
            if job_id in ended or job_id in running:
                continue
            deps = waits[job_id]
            bad = [d for d in deps if not _done(sd, d) and (
                ended.get(d, "COMPLETED") != "COMPLETED" if d in todo else _failed_elsewhere(sd, d))]
            if bad:
                end(job_id, "BLOCKED", f"dependency {names.get(bad[0], bad[0])} {ended.get(bad[0], 'FAILED')}")
                continue
            if not all(_done(sd, d) for d in deps) or len(running) >= int(record.get("max_parallel", 1)):
                continue
            proc = ctx.Process(target=_run_child, args=(str(sd.job(job_id)), record["folder"]))
            proc.start()
            running[job_id] = _Local(proc, 60.0 * float(record["timeout_min"][job_id]), record["folder"])
            journal.append(sd, {"type": "local_start", "job": job_id, "token": token, "local_id": str(proc.pid)})
        time.sleep(poll_s)
    return 0


def _done(sd: SweepDir, job_id: str) -> bool:
    return (sd.job(job_id) / jobfiles.DONE).exists()


def _failed_elsewhere(sd: SweepDir, job_id: str) -> bool:
    """A dependency outside this submission that will not complete (it is not queued anywhere)."""
    from alignkit.status.state import ACTIVE_STATES, refresh

    states = {s.id: s.state for s in refresh(sd, cancel_blocked=False).jobs}
    return states.get(job_id, "UNSUBMITTED") not in ACTIVE_STATES | {"COMPLETED"}


def _reason(sd: SweepDir, job_id: str, job: _Local) -> str | None:
    from alignkit.status.state import error_reason, last_exception_line

    return error_reason(sd.job(job_id)) or last_exception_line(job.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m alignkit.submit.localrun <sweep_dir> <token>", file=sys.stderr)
        return 2
    return drive(SweepDir.of(argv[0]), argv[1])


if __name__ == "__main__":
    raise SystemExit(main())
