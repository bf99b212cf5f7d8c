"""`alignkit cancel [SWEEP_DIR] [--stage S] [JOB...]`: cancel queued or running jobs of a sweep."""

from __future__ import annotations

import argparse
import subprocess

from alignkit import journal
from alignkit.cli.common import add_job_selection
from alignkit.errors import UserError
from alignkit.status import ACTIVE_STATES, open_sweep, refresh, select


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cancel", help="cancel pending/running jobs of a sweep (all, a stage, or some jobs)",
                       description="scancel the latest attempt of the selected jobs (default: every job that "
                                   "is pending or running). A later `alignkit submit` resubmits them.")
    add_job_selection(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sd = open_sweep(args.sweep_dir)
    st = refresh(sd)
    chosen = [j for j in select(st.jobs, args.jobs, args.stage) if j.state in ACTIVE_STATES]
    if not chosen:
        print("nothing to cancel (no selected job is pending or running)")
        return 0
    slurm_ids = [j.slurm_id for j in chosen if j.executor == "slurm" and j.slurm_id]
    local = [j.id for j in chosen if j.executor == "local"]
    if slurm_ids:
        proc = subprocess.run(["scancel", *slurm_ids], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise UserError(f"scancel failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    journal.append(sd, {"type": "cancel", "jobs": [j.id for j in chosen], "slurm_ids": slurm_ids,
                        "local_jobs": local})
    print(f"cancelled {len(chosen)} job(s)" + (f": {' '.join(slurm_ids)}" if slurm_ids else ""))
    return 0
