"""`alignkit release [SWEEP_DIR] [--stage S] [JOB...]`: start jobs queued with `submit --hold`."""

from __future__ import annotations

import argparse
import subprocess

from alignkit import journal
from alignkit.cli.common import add_job_selection
from alignkit.errors import UserError
from alignkit.status import open_sweep, refresh, select


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("release", help="release held jobs of a sweep (submitted with --hold)",
                       description="scontrol release the held jobs (local executor: lets its driver start).")
    add_job_selection(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sd = open_sweep(args.sweep_dir)
    st = refresh(sd)
    chosen = [j for j in select(st.jobs, args.jobs, args.stage) if j.state == "PENDING" and j.attempt]
    slurm_ids = [j.slurm_id for j in chosen if j.executor == "slurm" and j.slurm_id]
    tokens = sorted({j.attempt.token for j in chosen if j.executor == "local"})
    if slurm_ids:
        # scontrol takes a comma-separated list; whole arrays are released task by task
        proc = subprocess.run(["scontrol", "release", ",".join(slurm_ids)], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0 and "already" not in proc.stderr:
            raise UserError(f"scontrol release failed: {proc.stderr.strip() or proc.returncode}")
    for token in tokens:
        (sd.root / "local" / f"HOLD-{token}").unlink(missing_ok=True)
    if not slurm_ids and not tokens:
        print("nothing to release (no selected job is pending)")
        return 0
    journal.append(sd, {"type": "release", "slurm_ids": slurm_ids, "tokens": tokens})
    print(f"released {len(slurm_ids) + sum(1 for j in chosen if j.executor == 'local')} job(s)")
    return 0
