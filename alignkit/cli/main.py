"""`alignkit` command line: one small module per subcommand under alignkit/cli/.

Each module exposes `add_parser(subparsers)` and `run(args) -> int`. A `UserError` (bad spec,
bad profile, bad sweep directory) is printed as one line per problem, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from alignkit import __version__
from alignkit.contract.errors import UserError

COMMANDS = ("plan", "submit", "status", "logs", "cancel", "release", "collect", "prefetch", "preview",
            "sync")


class Parser(argparse.ArgumentParser):
    """Argument errors are one line (no usage block), exit 2; subcommand parsers inherit this class."""

    def error(self, message: str):  # type: ignore[override]
        from alignkit.contract.schema import one_line  # lazily: yaml is not needed by every command
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see '{self.prog} -h')\n")


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, with errors the top-level parser finds (extra arguments, control characters)
    reported by the subcommand's parser, so every message starts `alignkit COMMAND: error:`."""
    args, extra = parser.parse_known_args(argv)
    command = getattr(args, "command", None)
    own = parser.commands.get(command, parser) if command else parser  # type: ignore[attr-defined]
    if extra:
        own.error(f"unrecognized arguments: {' '.join(extra)}")
    _check_control_characters(own, args)
    return args


def _check_control_characters(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """No argument (a path, a job, a profile name) may carry a newline, NUL or other control character."""
    from alignkit.contract.schema import CONTROL
    for name, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and CONTROL.search(item):
                flag = "--" + name.replace("_", "-") if name not in ("spec", "sweep_dir", "jobs", "job") else name
                parser.error(f"argument {flag}: control character in {item!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="alignkit",
        description="Run preference-alignment studies (SFT/DPO x LoRA/QLoRA x data x models, evals, merges) "
                    "on SLURM or this machine, from one YAML sweep spec.",
        epilog="Start with: alignkit plan sweeps/smoke.yaml, then alignkit submit sweeps/smoke.yaml --executor local. "
               "Run 'alignkit COMMAND -h' for a command's options.")
    parser.add_argument("--version", action="version", version=f"alignkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"alignkit.cli.{name}").add_parser(sub)
    parser.commands = dict(sub.choices)  # type: ignore[attr-defined]
    return parser


class _Inert:
    """The terminal: every write shows Unicode bidi controls as [U+XXXX] (alignkit/contract/textsafe.py), so a
    label from a spec or a job cannot reorder what status, plan or collect print."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        from alignkit.contract.textsafe import no_bidi
        return self._stream.write(no_bidi(text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Inert(out), _Inert(err)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
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
    except OSError as exc:  # disk full, read-only, quota, permissions: the filesystem refused, say where
        from alignkit.contract.fsio import FS_ERRNOS, describe_os_error
        if exc.errno not in FS_ERRNOS:
            raise
        print(f"alignkit {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alignkit {args.command}: interrupted", file=sys.stderr)
        return 130
