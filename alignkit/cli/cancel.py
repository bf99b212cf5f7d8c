"""`alignkit cancel [SWEEP_DIR] [--stage S] [JOB...]`: cancel queued or running jobs of a sweep."""

from __future__ import annotations

import argparse

from alignkit import backends
from alignkit.cli.common import add_job_selection
from alignkit.status.state import ACTIVE_STATES, backend_attempts, open_sweep, print_warnings, refresh, select


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cancel", help="cancel pending/running jobs of a sweep (all, a stage, or some jobs)",
                       description="stop the latest attempt of the selected jobs through the executor that queued "
                                   "it (default: every job that is pending or running). A later `alignkit submit` "
                                   "resubmits them.")
    add_job_selection(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sd = open_sweep(args.sweep_dir, "cancel")
    st = refresh(sd)
    print_warnings("cancel", st)
    chosen = [j for j in select(st.jobs, args.jobs, args.stage) if j.state in ACTIVE_STATES]
    if not chosen:
        print("nothing to cancel (no selected job is pending or running)")
        return 0
    ids: list[str] = []
    for name, attempts in backend_attempts(chosen).items():  # each backend stops its own and journals it
        ids += backends.get(name).cancel(sd, attempts)
    shown = " ".join(ids[:20]) + (f" ... ({len(ids) - 20} more)" if len(ids) > 20 else "")
    print(f"cancelled {len(chosen)} job(s)" + (f": {shown}" if ids else ""))
    return 0
