"""`alignkit release [SWEEP_DIR] [--stage S] [JOB...]`: start jobs queued with `submit --hold`."""

from __future__ import annotations

import argparse

from alignkit import backends
from alignkit.cli.common import add_job_selection
from alignkit.status.state import backend_attempts, open_sweep, print_warnings, refresh, select


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("release", help="release held jobs of a sweep (submitted with --hold)",
                       description="let the held jobs start, each through the executor that queued it.")
    add_job_selection(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sd = open_sweep(args.sweep_dir, "release")
    st = refresh(sd)
    print_warnings("release", st)
    chosen = [j for j in select(st.jobs, args.jobs, args.stage) if j.state in ("PENDING", "HELD") and j.attempt]
    if not chosen:
        print("nothing to release (no selected job is pending)")
        return 0
    for name, attempts in backend_attempts(chosen).items():  # each backend releases its own and journals it
        backends.get(name).release(sd, attempts)
    print(f"released {len(chosen)} job(s)")
    return 0
