"""TRL's preference type (docs/source/dataset_formats.md "Preference"), standard or conversational.

Explicit prompt: {prompt, chosen, rejected}, read as the normalized format reads them. Implicit
prompt: {chosen, rejected} each holding the whole conversation (e.g. HuggingFaceH4/
ultrafeedback_binarized's train_prefs, whose string `prompt` column repeats the user turn that its
conversational chosen/rejected already hold). TRL's `maybe_extract_prompt` (trl 1.16.0
trl/data_utils.py) extracts the prompt when there is no `prompt` column, or when `prompt` and
chosen differ in being conversational; here the second case is narrowed to conversational chosen
that starts with a non-assistant turn (it holds the conversation), so rows the normalized format
always read (a string prompt with assistant-message responses, or the reverse) keep reading as
explicit. `extract_prompt` is TRL's: the longest shared prefix of chosen and rejected (turns, or
characters for strings, a space before the split moved to the responses) is the prompt.
"""

from __future__ import annotations

from typing import Any

from alignkit.plugins.formats import RowError, field, is_conversational, require_columns
from alignkit.plugins.formats.normalized import REASONS, to_pair

ROWS = "preference"
__all__ = ["REASONS", "ROWS", "convert", "detect", "extract_prompt"]


def detect(columns: set[str], first: dict) -> bool:
    return {"chosen", "rejected"} <= columns


def extract_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """trl.data_utils.extract_prompt: (prompt, chosen rest, rejected rest)."""
    idx = 0
    for idx in range(min(len(chosen), len(rejected))):
        if chosen[idx] != rejected[idx]:
            if chosen[idx - 1] == " ":  # remove space before the prompt
                idx -= 1
            break
    return chosen[:idx], chosen[idx:], rejected[idx:]


def convert(ds: Any, label: str, part: Any) -> list[dict]:
    require_columns(ds, ("chosen", "rejected"), label)
    has_prompt = "prompt" in ds.column_names
    rows = []
    for i, row in enumerate(ds):
        part.rows += 1
        chosen = field(row, "chosen", (str, list), label, i)
        rejected = field(row, "rejected", (str, list), label, i)
        prompt = field(row, "prompt", (str, list), label, i) if has_prompt else None
        if prompt is None or (is_conversational(chosen) and chosen[0]["role"] != "assistant"):
            if chosen == rejected:
                part.drop("identical")
                continue
            prompt, chosen, rejected = extract_prompt(chosen, rejected)
            if not prompt:
                where = "field 'chosen'" if has_prompt else "fields 'chosen' and 'rejected'"
                raise RowError(f"{label} row {i + 1}: {where} share no prompt (implicit-prompt rows hold the "
                               f"conversation, user turn first, in both chosen and rejected)")
        pair = to_pair(prompt, chosen, rejected, label, i)
        if pair is None:
            part.drop("identical")
            continue
        rows.append(pair)
    part.kept = len(rows)
    return rows
