"""Arguments several subcommands share, and the validators that make a bad value an argument
error (exit 2, one line) instead of a traceback or a silent misbehaviour."""

from __future__ import annotations

import argparse
import math
import os

from alignkit.contract.stages import STAGE_NAMES


def add_job_selection(p: argparse.ArgumentParser) -> None:
    """SWEEP_DIR, JOB... and --stage: which jobs of a sweep a command acts on."""
    p.add_argument("sweep_dir", nargs="?", type=directory, help="sweep directory (default: the current one, else the newest under runs/)")
    p.add_argument("jobs", nargs="*", metavar="JOB", help="job ids, id prefixes, names or SLURM ids")
    p.add_argument("--stage", choices=STAGE_NAMES, help="only this stage")


def positive_float(text: str) -> float:
    """A finite number above zero (`--watch 0`, `-1`, `nan` and `inf` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number above zero (`--n 0` and `-3` are refused)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def directory(text: str) -> str:
    """A directory to read or write: refused when something that is not a directory is there."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    return text
