"""TRL's prompt-completion type (docs/source/dataset_formats.md "Prompt-completion"): SFT data.

Rows {prompt, completion}, standard (strings: one user turn, one assistant turn) or conversational
(the prompt ending with a user turn, the completion assistant turns). The SFT loss is on the
completion's tokens only (TRL's `completion_only_loss`, on by default for this type).
"""

from __future__ import annotations

from typing import Any

from alignkit.plugins.formats import field, prompt_messages, require_columns, response_messages

ROWS = "prompt_completion"
COLUMNS = ("prompt", "completion")


def detect(columns: set[str], first: dict) -> bool:
    return set(COLUMNS) <= columns and "label" not in columns


def completion_row(row: dict, label: str, i: int) -> dict:
    """One row's prompt and completion as messages (unpaired_preference adds its label to it)."""
    return {"prompt": prompt_messages(field(row, "prompt", (str, list), label, i), label, i),
            "completion": response_messages(field(row, "completion", (str, list), label, i), "completion", label, i)}


def convert(ds: Any, label: str, part: Any) -> list[dict]:
    require_columns(ds, COLUMNS, label)
    rows = []
    for i, row in enumerate(ds):
        part.rows += 1
        rows.append(completion_row(row, label, i))
    part.kept = len(rows)
    return rows
