"""`alignkit status [SWEEP_DIR]`: one line per job and a summary, from one sacct call."""

from __future__ import annotations

import argparse
import json
import sys
import time

from alignkit.cli.common import STAGES, directory, positive_float
from alignkit.status import StudyStatus, open_sweep, refresh


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="state of every job of a sweep (one sacct call)",
                       description="Join the journal, one sacct call and the files jobs write; --json output "
                                   "is documented in docs/slurm.md and stable.")
    p.add_argument("sweep_dir", nargs="?", type=directory, help="sweep directory (default: current directory)")
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/slurm.md)")
    p.add_argument("--watch", nargs="?", type=positive_float, const=10.0, metavar="SECONDS",
                   help="refresh every SECONDS (default 10) until every job has ended")
    p.add_argument("--stage", choices=STAGES, help="only this stage")
    p.add_argument("--failed", action="store_true", help="only jobs that did not succeed")
    p.set_defaults(run=run)


_OK = ("COMPLETED", "PENDING", "RUNNING", "REQUEUED", "PREEMPTED", "COMPLETING")


def _fmt_elapsed(s: int | None) -> str:
    if s is None:
        return "-"
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render(st: StudyStatus, failed_only: bool) -> str:
    rows = []
    for j in st.jobs:
        if failed_only and j.state in _OK:
            continue
        prog = ""
        if j.progress and j.progress.get("max_steps"):
            prog = f"{j.progress.get('step')}/{j.progress.get('max_steps')}"
            if j.progress.get("loss") is not None:
                prog += f" loss={j.progress['loss']:.4g}"
        rows.append((j.id, j.stage, j.state, _fmt_elapsed(j.elapsed_s), j.node or "-", str(j.restarts),
                     j.slurm_id or "-", prog, j.name, j.reason or ""))
    head = ("ID", "STAGE", "STATE", "ELAPSED", "NODE", "RESTARTS", "SLURM_ID", "PROGRESS", "NAME", "REASON")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + ("  " + r[-1] if r[-1] else "")
             for r in [head, *rows]]
    lines += [f"{len(st.jobs)} jobs  {st.summary_line()}"] + [f"warning: {w}" for w in st.warnings]
    return "\n".join(lines)


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
            print(render(st, args.failed))
        sys.stdout.flush()
        active = any(j.state in ("PENDING", "RUNNING", "REQUEUED", "PREEMPTED", "COMPLETING") for j in st.jobs)
        if not args.watch or not active:
            return 0
        time.sleep(args.watch)
        if not args.json:
            print()
