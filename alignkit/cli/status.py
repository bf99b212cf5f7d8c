"""`alignkit status [SWEEP_DIR]`: one line per array (or per job: --jobs and the filters), from one
sacct call; the views are alignkit/status/view.py."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from alignkit.status import view as statusview
from alignkit.contract.stages import STAGE_NAMES
from alignkit.cli.common import directory, positive_float
from alignkit.status.state import StudyStatus, open_sweep, refresh


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="state of every job of a sweep (one accounting call)",
                       description="Join the journal, one call to the scheduler's accounting and the files jobs write; --json output "
                                   "is documented in docs/slurm.md and stable.")
    p.add_argument("sweep_dir", nargs="?", type=directory, help="sweep directory (default: the current one, else the newest under runs/)")
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/slurm.md)")
    p.add_argument("--watch", nargs="?", type=positive_float, const=10.0, metavar="SECONDS",
                   help="refresh every SECONDS (default 10) until every job has ended")
    p.add_argument("--stage", choices=STAGE_NAMES, help="one row per job of this stage")
    p.add_argument("--failed", action="store_true", help="one row per job that did not succeed")
    p.add_argument("--running", action="store_true", help="one row per running job")
    p.add_argument("--jobs", action="store_true", help="one row per job (default: one line per array)")
    p.set_defaults(run=run)


_OK = ("COMPLETED", "PENDING", "HELD", "RUNNING", "REQUEUED", "PREEMPTED", "COMPLETING")


def _rows(st: StudyStatus, args: argparse.Namespace) -> list | None:
    """The jobs to list one per row, or None for the per-array view."""
    if not (args.jobs or args.failed or args.running or args.stage):
        return None
    return [j for j in st.jobs if (not args.failed or j.state not in _OK)
            and (not args.running or j.state in ("RUNNING", "COMPLETING"))]


def render(st: StudyStatus, args: argparse.Namespace) -> str:
    size = shutil.get_terminal_size((120, 30))  # COLUMNS / LINES first, then the terminal
    rows = _rows(st, args)
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")  # red failures on a terminal only
    if rows is None:
        return statusview.render_arrays(st, size.columns, size.lines, colour=colour)
    return statusview.render_jobs(st, rows, size.columns, colour=colour)


def run(args: argparse.Namespace) -> int:
    sd = open_sweep(args.sweep_dir)
    while True:
        st = refresh(sd, stage=args.stage)
        if args.json:
            out = st.to_json()  # the summary always counts every job; --failed filters the rows
            if args.failed:
                out["jobs"] = [j for j in out["jobs"] if j["state"] not in _OK]
            # compact: the C encoder (indent= falls back to the pure-Python one, ~10x slower)
            sys.stdout.write(json.dumps(out) + "\n")
        else:
            if args.watch and sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")  # redraw in place: cursor home, clear screen
            print(render(st, args))
        sys.stdout.flush()
        active = any(j.state in ("PENDING", "HELD", "RUNNING", "REQUEUED", "PREEMPTED", "COMPLETING") for j in st.jobs)
        if not args.watch or not active:
            return 0
        time.sleep(args.watch)
        if not args.json and not sys.stdout.isatty():
            print()
