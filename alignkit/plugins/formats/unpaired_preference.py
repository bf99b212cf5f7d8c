"""TRL's unpaired preference type (docs/source/dataset_formats.md "Unpaired preference"): KTO's data.

Rows {prompt, completion, label}: one completion and a bool saying whether it is desirable.
Standard (strings) or conversational (messages); a string prompt is one user turn, a string
completion one assistant turn. The label must be a bool (TRL's type): 0/1 or "yes" is refused by row.
"""

from __future__ import annotations

from typing import Any

from alignkit.plugins.formats import field, require_columns
from alignkit.plugins.formats.prompt_completion import completion_row

ROWS = "unpaired_preference"
COLUMNS = ("prompt", "completion", "label")


def detect(columns: set[str], first: dict) -> bool:
    return set(COLUMNS) <= columns


def convert(ds: Any, label: str, part: Any) -> list[dict]:
    require_columns(ds, COLUMNS, label)
    rows = []
    for i, row in enumerate(ds):
        part.rows += 1
        rows.append({**completion_row(row, label, i), "label": field(row, "label", bool, label, i)})
    part.kept = len(rows)
    return rows
