"""`alignkit logs JOB [--stage S] [--follow]`: stdout and stderr of a job's latest attempt."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from alignkit.contract.stages import STAGE_NAMES
from alignkit.cli.common import directory
from alignkit.contract.errors import UserError
from alignkit.status.state import ACTIVE_STATES, find_job, log_paths, open_sweep, print_warnings, refresh, select


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="print a job's stdout/stderr (latest attempt)",
                       description="Print the stdout and stderr of the latest attempt of JOB (a requeued "
                                   "attempt appends to the same files); --follow keeps printing until it ends.")
    p.add_argument("job", metavar="JOB", help="job id, id prefix, name, any unique part of a name, or SLURM id")
    p.add_argument("-d", "--sweep-dir", type=directory, help="sweep directory (default: the current one, else the newest under runs/)")
    p.add_argument("--stage", choices=STAGE_NAMES, help="disambiguate a job name")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the job ends")
    p.add_argument("--stdout", action="store_true", help="only stdout")
    p.add_argument("--stderr", action="store_true", help="only stderr")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sd = open_sweep(args.sweep_dir, "logs")
    st = refresh(sd, cancel_blocked=False)
    print_warnings("logs", st)
    job = find_job(st.jobs, args.job, args.stage)
    if job.attempt is None:
        raise UserError(f"job {job.id} ({job.name}) was never submitted: no logs")
    paths = log_paths(job.attempt)
    if paths is None:
        raise UserError(f"job {job.id} ({job.name}) has not started yet: no logs")
    wanted = [p for p, flag in zip(paths, (args.stdout or not args.stderr, args.stderr or not args.stdout), strict=True) if flag]
    offsets = {p: 0 for p in wanted}
    for p in wanted:
        if not p.exists():
            print(f"==> {p} (not written yet)")
            continue
        print(f"==> {p} <==")
        offsets[p] = _dump(p, 0)
    while args.follow:
        time.sleep(1.0)
        for p in wanted:
            if p.exists() and p.stat().st_size > offsets[p]:
                offsets[p] = _dump(p, offsets[p])
        job = select(refresh(sd, cancel_blocked=False).jobs, [job.id])[0]
        if job.state not in ACTIVE_STATES:
            break
    return 0


def _dump(path: Path, offset: int) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError as exc:  # a log that vanished or is unreadable: say so, keep going
        print(f"alignkit logs: warning: {path}: unreadable ({exc.strerror or exc})", file=sys.stderr)
        return offset
    sys.stdout.write(data.decode("utf-8", "replace"))
    sys.stdout.flush()
    return offset + len(data)
