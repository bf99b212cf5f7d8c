"""Arguments several subcommands share."""

from __future__ import annotations

import argparse


def add_job_selection(p: argparse.ArgumentParser) -> None:
    """SWEEP_DIR, JOB... and --stage: which jobs of a sweep a command acts on."""
    p.add_argument("sweep_dir", nargs="?", help="sweep directory (default: current directory)")
    p.add_argument("jobs", nargs="*", metavar="JOB", help="job ids, id prefixes, names or SLURM ids")
    p.add_argument("--stage", choices=("train", "eval", "merge", "judge"), help="only this stage")
