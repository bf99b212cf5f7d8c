"""The drop report: how many rows each part of a preference dataset had, kept and dropped, and why.

Users with the real data compare it with the paper's counts (HH-RLHF: 43,810 helpful and 42,507
harmless training pairs; BeaverTails: 297,394 helpful and 46,625 harmless).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class PartReport:
    """One loaded part: a preference read from one source (and data_dir)."""

    preference: str
    source: str
    rows: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def as_dict(self) -> dict:
        return {"preference": self.preference, "source": self.source, "rows": self.rows,
                "kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}


@dataclass
class DropReport:
    parts: list[PartReport] = field(default_factory=list)
    total: int = 0  # rows in the returned dataset, after mixing and the sample limit
    # Rows dropped while building training examples (jobs.data.examples: e.g. an SFT response cut
    # away by max_length), after mixing and the limit; `trained` = rows left, None until built.
    examples_dropped: Counter = field(default_factory=Counter)
    trained: int | None = None
    # Held-out validation rows and the examples built from them (dataset.validation); None without
    validation: dict | None = None

    def dropped(self) -> dict[str, int]:
        out: Counter = Counter()
        for p in self.parts:
            out.update(p.dropped)
        out.update(self.examples_dropped)
        return dict(sorted(out.items()))

    def as_dict(self) -> dict:
        out = {"parts": [p.as_dict() for p in self.parts], "dropped": self.dropped(), "total": self.total,
               "trained": self.trained}
        if self.validation is not None:  # only runs with validation carry the key
            out["validation"] = self.validation
        return out

    def summary(self) -> str:
        """One line for logs, e.g. "helpful: 240 rows, 231 kept (dropped: identical=9); total 200"."""
        parts = []
        for p in self.parts:
            why = ", ".join(f"{k}={v}" for k, v in sorted(p.dropped.items()))
            parts.append(f"{p.preference}: {p.rows} rows, {p.kept} kept" + (f" (dropped: {why})" if why else ""))
        line = "; ".join(parts) + f"; total {self.total}"
        if self.trained is not None:
            why = ", ".join(f"{k}={v}" for k, v in sorted(self.examples_dropped.items()))
            line += f"; {self.trained} trained" + (f" (dropped: {why})" if why else "")
        return line
