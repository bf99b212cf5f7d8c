"""Paths of a sweep directory (docs/contract.md) and reading its manifest back.

Both halves use it: the launcher writes here, jobs find their inputs here, status and collect read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
JOURNAL = "journal.jsonl"


@dataclass(frozen=True)
class SweepDir:
    root: Path

    @classmethod
    def of(cls, path: str | Path) -> "SweepDir":
        return cls(Path(path).resolve())

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def lock(self) -> Path:
        return self.root / ".submit.lock"

    def job(self, job_id: str) -> Path:
        return self.jobs / job_id

    def load_manifest(self) -> dict[str, Any]:
        with open(self.manifest, encoding="utf-8") as f:
            return json.load(f)

    def read_journal(self) -> list[dict[str, Any]]:
        """Journal records in order; a torn last line (writer killed mid-append) is ignored."""
        if not self.journal.exists():
            return []
        records = []
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

