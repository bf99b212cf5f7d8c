"""The local executor's driver: `python -m alignkit.localrun <sweep_dir> <token>`.

`alignkit submit --executor local` journals one submission and starts this process detached, so
submit returns at once as on SLURM. It runs that submission's jobs through submitit's
LocalExecutor (the same StageRunner, signals and requeue as on SLURM) in dependency order, at
most `max_parallel` at a time; a job whose dependency failed is BLOCKED. It journals
local_start/local_end records that `alignkit status` reads, honours `alignkit cancel` (cancel
records) and `--hold` (waits while local/HOLD-<token> exists), and exits when all are done.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from alignkit import journal
from alignkit.sweepdir import SweepDir


def drive(sd: SweepDir, token: str, poll_s: float = 0.5) -> int:
    import submitit

    from alignkit.runner import StageRunner

    record = next(r for r in sd.read_journal() if r.get("type") == "submission" and r.get("token") == token)
    todo: list[str] = list(record["jobs"])
    waits = {j: [w[0] for w in record["waits_on"].get(j, [])] for j in todo}
    names = {j["id"]: j["name"] for j in sd.load_manifest()["jobs"]}
    hold = sd.root / "local" / f"HOLD-{token}"
    running: dict[str, object] = {}
    ended: dict[str, str] = {}

    def end(job_id: str, state: str, reason: str | None = None) -> None:
        ended[job_id] = state
        journal.append(sd, {"type": "local_end", "job": job_id, "token": token, "state": state, "reason": reason})

    while len(ended) < len(todo):
        cancelled = {j for r in sd.read_journal() if r.get("type") == "cancel" for j in r.get("local_jobs", [])}
        for job_id, job in list(running.items()):
            if job_id in cancelled:
                job.cancel()  # type: ignore[attr-defined]
                time.sleep(1.0)
                del running[job_id]
                end(job_id, "CANCELLED", "cancelled")
            elif job.done():  # type: ignore[attr-defined]
                del running[job_id]
                if (sd.job(job_id) / "DONE").exists():
                    end(job_id, "COMPLETED")
                else:
                    end(job_id, "FAILED", _reason(sd, job_id, job))
        if hold.exists():
            time.sleep(poll_s)
            continue
        for job_id in todo:
            if job_id in ended or job_id in running:
                continue
            if job_id in cancelled:
                end(job_id, "CANCELLED", "cancelled")
                continue
            deps = waits[job_id]
            bad = [d for d in deps if not _done(sd, d) and (
                ended.get(d, "COMPLETED") != "COMPLETED" if d in todo else _failed_elsewhere(sd, d))]
            if bad:
                end(job_id, "BLOCKED", f"dependency {names.get(bad[0], bad[0])} {ended.get(bad[0], 'FAILED')}")
                continue
            if not all(_done(sd, d) for d in deps) or len(running) >= int(record.get("max_parallel", 1)):
                continue
            ex = submitit.LocalExecutor(folder=record["folder"])
            ex.update_parameters(timeout_min=int(record["timeout_min"][job_id]),
                                 signal_delay_s=int(record["signal_delay_s"]),
                                 gpus_per_node=int(record["gpus"].get(job_id, 0)), setup=record["setup"])
            job = ex.submit(StageRunner(float(record.get("watchdog_s", 15))), str(sd.job(job_id)))
            running[job_id] = job
            journal.append(sd, {"type": "local_start", "job": job_id, "token": token, "local_id": job.job_id})
        time.sleep(poll_s)
    return 0


def _done(sd: SweepDir, job_id: str) -> bool:
    return (sd.job(job_id) / "DONE").exists()


def _failed_elsewhere(sd: SweepDir, job_id: str) -> bool:
    """A dependency outside this submission that will not complete (it is not queued anywhere)."""
    from alignkit.status import ACTIVE_STATES, refresh

    states = {s.id: s.state for s in refresh(sd, cancel_blocked=False).jobs}
    return states.get(job_id, "UNSUBMITTED") not in ACTIVE_STATES | {"COMPLETED"}


def _reason(sd: SweepDir, job_id: str, job: object) -> str | None:
    from alignkit.fsio import read_json
    from alignkit.status import last_exception_line

    err = sd.job(job_id) / "error.json"
    if err.exists():
        try:
            return read_json(err).get("reason")
        except (OSError, ValueError):
            pass
    return last_exception_line(Path(job.paths.stderr))  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m alignkit.localrun <sweep_dir> <token>", file=sys.stderr)
        return 2
    return drive(SweepDir.of(argv[0]), argv[1])


if __name__ == "__main__":
    raise SystemExit(main())
