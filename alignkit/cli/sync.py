"""`alignkit sync [SWEEP_DIR] [--dry-run]`: upload a sweep's offline W&B runs from the login node.

Training jobs with `tracking: {backend: wandb}` run W&B offline (compute nodes rarely reach the
internet): each leaves `jobs/<id>/wandb/offline-run-*`. This runs W&B's own uploader on them,
`wandb sync DIR...` (which skips runs it already synced), in batches that fit a command line.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from alignkit.cli.common import directory
from alignkit.contract.errors import UserError
from alignkit.status.state import open_sweep
from alignkit.submit.sweepdir import SweepDir, contained

BATCH = 200  # run folders per `wandb sync` call: 200 x ~120 characters, far below ARG_MAX


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sync", help="upload the sweep's offline W&B runs (wandb sync) from the login node",
                       description="Run `wandb sync` on every offline W&B run the sweep's training jobs wrote "
                                   "(jobs/*/wandb/offline-run-*). Needs the login node's W&B login "
                                   "(`wandb login` or $WANDB_API_KEY).")
    p.add_argument("sweep_dir", nargs="?", type=directory, help="sweep directory (default: the current one, else the newest under runs/)")
    p.add_argument("--dry-run", action="store_true", help="print the wandb sync command(s) instead of running them")
    p.set_defaults(run=run)


def offline_runs(sd: SweepDir) -> list[Path]:
    """The sweep's offline run folders; a symbolic link on the way (out of the sweep) is skipped."""
    return [d for d in sorted(sd.jobs.glob("*/wandb/offline-run-*")) if d.is_dir() and contained(d, sd.root)]


def wandb_executable() -> str | None:
    """`wandb` from this interpreter's environment first (the one `alignkit[track]` installed into)."""
    here = Path(sys.executable).parent / "wandb"
    return str(here) if here.is_file() else shutil.which("wandb")


def run(args: argparse.Namespace) -> int:
    sd = open_sweep(args.sweep_dir, "sync")
    runs = offline_runs(sd)
    if not runs:
        print(f"{sd.root}: no offline W&B runs to sync (jobs/*/wandb/offline-run-*)")
        return 0
    exe = wandb_executable()
    batches = [[exe or "wandb", "sync", *map(str, runs[i:i + BATCH])] for i in range(0, len(runs), BATCH)]
    if args.dry_run:
        for cmd in batches:
            print(shlex.join(cmd))
        return 0
    if exe is None:
        raise UserError(f"wandb is not installed here: pip install 'alignkit[track]', or run elsewhere: "
                        f"wandb sync {shlex.quote(str(sd.jobs))}/*/wandb/offline-run-*")
    for cmd in batches:
        code = subprocess.run(cmd).returncode  # W&B's own progress lines go to the terminal
        if code != 0:
            raise UserError(f"wandb sync exited with status {code} (see its output above; `wandb login` first?)")
    print(f"synced {len(runs)} offline W&B run(s) of {sd.root}")
    return 0
