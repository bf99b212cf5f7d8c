"""`alignkit` command line: one small module per subcommand under alignkit/cli/.

Each module exposes `add_parser(subparsers)` and `run(args) -> int`. A `UserError` (bad spec,
bad profile, bad sweep directory) is printed as one line per problem, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from alignkit import __version__
from alignkit.errors import UserError

COMMANDS = ("plan", "submit", "status", "logs", "cancel", "release", "collect", "prefetch", "preview")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignkit",
        description="Run preference-alignment studies (SFT/DPO x LoRA/QLoRA x data x models, evals, merges) "
                    "on SLURM or this machine, from one YAML sweep spec.",
        epilog="Start with: alignkit plan sweeps/smoke.yaml, then alignkit submit sweeps/smoke.yaml --executor local. "
               "Run 'alignkit COMMAND -h' for a command's options.")
    parser.add_argument("--version", action="version", version=f"alignkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"alignkit.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        for line in str(exc).splitlines():
            print(f"alignkit {args.command}: error: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `alignkit plan --json | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"alignkit {args.command}: interrupted", file=sys.stderr)
        return 130
