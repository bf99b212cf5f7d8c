"""Users' own data in the normalized form: {prompt, chosen, rejected}.

`prompt` is a list of {role, content} messages ending with a user turn, or a plain string (one
user turn); `chosen` and `rejected` are lists of assistant messages or plain strings. Anything
else is an error naming the row and field; pairs whose two responses are the same are dropped.
"""

from __future__ import annotations

from typing import Any

from jobs.data.report import PartReport
from jobs.data.source import field, require_columns
from jobs.errors import JobFailure

REASONS = {"identical": "chosen and rejected are the same"}
ROLES = ("system", "user", "assistant")


def messages(value: Any, key: str, default_role: str, label: str, i: int) -> list[dict]:
    where = f"{label} row {i + 1}: field {key!r}"
    if isinstance(value, str):
        value = [{"role": default_role, "content": value}]
    if not value:
        raise JobFailure(f"{where} is empty")
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise JobFailure(f"{where} message {j + 1} should be {{'role': str, 'content': str}}, got {m!r:.80}")
        if m["role"] not in ROLES:
            raise JobFailure(f"{where} message {j + 1}: unknown role {m['role']!r} (expected {', '.join(ROLES)})")
        if not m["content"].strip():
            raise JobFailure(f"{where} message {j + 1} is empty")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def convert(ds: Any, label: str, part: PartReport) -> list[dict]:
    require_columns(ds, ("prompt", "chosen", "rejected"), label)
    rows = []
    for i, row in enumerate(ds):
        part.rows += 1
        pair = {}
        for key, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
            pair[key] = messages(field(row, key, (str, list), label, i), key, role, label, i)
        if pair["prompt"][-1]["role"] != "user":
            raise JobFailure(f"{label} row {i + 1}: field 'prompt' should end with a user message")
        for key in ("chosen", "rejected"):
            if any(m["role"] != "assistant" for m in pair[key]):
                raise JobFailure(f"{label} row {i + 1}: field {key!r} should hold assistant messages only")
        if pair["chosen"] == pair["rejected"]:
            part.drop("identical")
            continue
        rows.append(pair)
    part.kept = len(rows)
    return rows
