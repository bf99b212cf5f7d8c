"""Paths of a sweep directory (docs/contract.md), reading its manifest and journal back, and the
validators every reader shares.

Both halves use it: the launcher writes here, jobs find their inputs here, status and collect read.
A job id becomes a path (`jobs/<id>`), so an id read back from a file that someone else may have
edited is checked here, where it is read, not only where it was written: an id with `/`, `..`, a
leading dot or a control character could otherwise point a delete (`collect --prune`) outside the
sweep directory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.contract import paths
from alignkit.contract.errors import UserError
from alignkit.contract.fsio import remove_stale_temps

MANIFEST = "manifest.json"
JOURNAL = "journal.jsonl"

# One path component (the spec's alphabet for names): no separator, space or control character; `.`
# and `..` are refused separately. 255 bytes is the common file-name limit.
_SAFE = re.compile(r"[A-Za-z0-9_.\-]{1,255}")
# Journal keys whose values are job ids or submission tokens (single ids, lists, or dict keys).
_JOURNAL_ID_KEYS = ("job", "jobs", "local_jobs", "waits_on", "token", "tokens")


def id_problem(value: Any) -> str | None:
    """Why `value` cannot be a job id, submission token or sweep name (one path component), or None."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if not _SAFE.fullmatch(value) or value in (".", ".."):
        return (f"{value!r} is not a safe name (1-255 letters, digits, '.', '_' or '-'; not '.' or '..'; "
                f"no '/', spaces or control characters)")
    return None


def check_id(value: Any, where: str) -> str:
    """`value` if it is a safe job id/token/sweep name; else UserError naming `where` (file and key)."""
    why = id_problem(value)
    if why:
        raise UserError(f"{where}: {why}")
    return value


def contained(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether `path` lies strictly inside `root` with no symbolic link on the way (itself included).

    `root` must already be resolved (SweepDir.of resolves it)."""
    p = os.path.abspath(path)
    r = os.fspath(root)
    return p.startswith(r.rstrip(os.sep) + os.sep) and os.path.realpath(p) == p


@dataclass(frozen=True)
class SweepDir:
    root: Path

    @classmethod
    def of(cls, path: str | Path) -> "SweepDir":
        try:
            return cls(Path(path).resolve())
        except (RuntimeError, OSError):  # Python 3.11's resolve() raises RuntimeError on a loop
            raise UserError(f"{path}: a symlink loop, not a sweep directory") from None

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL

    @property
    def code(self) -> Path:
        return self.root / paths.CODE

    @property
    def jobs(self) -> Path:
        return self.root / paths.JOBS

    @property
    def lock(self) -> Path:
        return self.root / ".submit.lock"

    def remove_stale_temps(self) -> None:
        """Temporaries a killed submit or collect left where they write (fsio: dead writers' only)."""
        for d in (self.root, self.code, self.code / "versions", self.root / "local", self.root / "dry-run"):
            remove_stale_temps(d)

    def job(self, job_id: str) -> Path:
        return self.jobs / check_id(job_id, "job id")

    def load_manifest(self) -> dict[str, Any]:
        """The manifest, its sweep name and every job id (and dependency) checked: UserError if not."""
        if not self.manifest.exists():
            raise UserError(f"{self.manifest}: not found; is {self.root} a sweep directory "
                            f"(alignkit submit writes it)?")
        try:
            with open(self.manifest, encoding="utf-8") as f:
                manifest = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{self.manifest}: not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("jobs"), list):
            raise UserError(f"{self.manifest}: key 'jobs' is missing or not a list")
        if "sweep" in manifest:
            check_id(manifest["sweep"], f"{self.manifest}: key 'sweep'")
        for i, entry in enumerate(manifest["jobs"]):
            if isinstance(entry, dict) and "id" in entry:
                check_id(entry["id"], f"{self.manifest}: key 'jobs[{i}].id'")
                for k, dep in enumerate(entry.get("depends_on") or []):
                    check_id(dep, f"{self.manifest}: key 'jobs[{i}].depends_on[{k}]'")
        return manifest

    def read_journal(self) -> list[dict[str, Any]]:
        """Journal records in order; a torn last line (writer killed mid-append) is ignored.

        A record whose job ids or tokens are not safe names is refused (UserError naming the line)."""
        if not self.journal.exists():
            return []
        records = []
        for n, line in enumerate(self.journal.read_text(encoding="utf-8").splitlines(), 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                _check_journal_ids(record, f"{self.journal}: line {n}")
            records.append(record)
        return records


def _check_journal_ids(record: dict[str, Any], where: str) -> None:
    for key in _JOURNAL_ID_KEYS:
        if key not in record or record[key] is None:
            continue
        value = record[key]
        values = list(value) if isinstance(value, (list, dict)) else [value]
        for v in values:
            check_id(v, f"{where}: key '{key}'")

