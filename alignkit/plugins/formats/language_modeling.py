"""TRL's language-modeling type (docs/source/dataset_formats.md "Language modeling"): SFT data.

Conversational rows {messages: [{role, content}, ...]} (at least one assistant turn), rendered
with the model's template; the SFT loss is on every token, or on the assistant turns only with the
method's `assistant_only_loss: true` (TRL's rule). Standard rows {text: "..."} are tokenized as
they are, an end-of-sequence token appended when missing (TRL's SFTTrainer `add_eos`), and every
token carries loss. A source with both columns is read as conversational.
"""

from __future__ import annotations

from typing import Any

from alignkit.plugins.formats import RowError, field, messages, require_columns

ROWS = "language_modeling"


def detect(columns: set[str], first: dict) -> bool:
    return "messages" in columns or "text" in columns


def convert(ds: Any, label: str, part: Any) -> list[dict]:
    key = "messages" if "messages" in ds.column_names else "text"
    require_columns(ds, (key,), label)
    rows = []
    for i, row in enumerate(ds):
        part.rows += 1
        if key == "text":
            text = field(row, "text", str, label, i)
            if not text.strip():
                raise RowError(f"{label} row {i + 1}: field 'text' is empty")
            rows.append({"text": text})
            continue
        turns = messages(field(row, "messages", list, label, i), "messages", "user", label, i)
        if not any(m["role"] == "assistant" for m in turns):
            raise RowError(f"{label} row {i + 1}: field 'messages' has no assistant message (nothing to learn)")
        rows.append({"messages": turns})
    part.kept = len(rows)
    return rows
