"""Users' own data in the normalized form: {prompt, chosen, rejected}.

`prompt` is a list of {role, content} messages ending with a user turn, or a plain string (one
user turn); `chosen` and `rejected` are lists of assistant messages or plain strings. Anything
else is an error naming the row and field; pairs whose two responses are the same are dropped.
TRL's preference format (preference.py, the one `format: auto` picks) reads the same rows and
also the implicit-prompt form; `normalized` is never picked by `format: auto`.
"""

from __future__ import annotations

from typing import Any, Optional

from alignkit.plugins.formats import field, prompt_messages, require_columns, response_messages

ROWS = "preference"
REASONS = {"identical": "chosen and rejected are the same"}


def to_pair(prompt: Any, chosen: Any, rejected: Any, label: str, i: int) -> Optional[dict]:
    """The checked pair, or None for a pair whose two responses are the same (dropped, counted)."""
    pair = {"prompt": prompt_messages(prompt, label, i),
            "chosen": response_messages(chosen, "chosen", label, i),
            "rejected": response_messages(rejected, "rejected", label, i)}
    return None if pair["chosen"] == pair["rejected"] else pair


def convert(ds: Any, label: str, part: Any) -> list[dict]:
    require_columns(ds, ("prompt", "chosen", "rejected"), label)
    rows = []
    for i, row in enumerate(ds):
        part.rows += 1
        values = [field(row, key, (str, list), label, i) for key in ("prompt", "chosen", "rejected")]
        pair = to_pair(*values, label, i)
        if pair is None:
            part.drop("identical")
            continue
        rows.append(pair)
    part.kept = len(rows)
    return rows
