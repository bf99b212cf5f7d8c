"""BeaverTails preference pairs, in the PKU-Alignment/PKU-SafeRLHF schema.

Rows: {prompt, response_0, response_1, is_response_0_safe, is_response_1_safe,
better_response_id, (safer_response_id)}. The paper (§A.2, App. C) derives its splits as:
  helpful   the better response is chosen, the other rejected (every row);
  harmless  rows where exactly one response is safe; the safe one is chosen.
Rows are single-turn. Known non-pairs are dropped and counted (see REASONS); a structurally
broken row (missing field, wrong type, empty prompt) is an error naming its row.
"""

from __future__ import annotations

from typing import Any

from alignkit.plugins.formats import RowError, field, require_columns

ROWS = "preference"
FILES = False  # its preferences are folders (subsets) of one source, never files of their own

PREFERENCES = ("helpful", "harmless")  # the paper's derivations; other names have none
COLUMNS = ("prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe", "better_response_id")

REASONS = {
    "identical": "both responses are the same text",
    "empty_response": "a response with no text",
    "both_safe": "harmless: both responses are safe, so neither is preferred for safety",
    "both_unsafe": "harmless: both responses are unsafe",
}


def detect(columns: set[str], first: dict) -> bool:
    return set(COLUMNS) <= columns


def convert(ds: Any, label: str, part: Any) -> list[dict]:
    require_columns(ds, COLUMNS, label)
    rows = []
    for i, row in enumerate(ds):
        part.rows += 1
        prompt = field(row, "prompt", str, label, i).strip()
        if not prompt:
            raise RowError(f"{label} row {i + 1}: field 'prompt' is empty")
        responses = [field(row, f"response_{k}", str, label, i).strip() for k in (0, 1)]
        safe = [field(row, f"is_response_{k}_safe", bool, label, i) for k in (0, 1)]
        better = field(row, "better_response_id", int, label, i)
        if better not in (0, 1):
            raise RowError(f"{label} row {i + 1}: field 'better_response_id' should be 0 or 1, got {better}")
        if not all(responses):
            part.drop("empty_response")
            continue
        if responses[0] == responses[1]:
            part.drop("identical")
            continue
        if part.preference == "helpful":
            chosen = better
        elif safe[0] != safe[1]:
            chosen = 0 if safe[0] else 1
        else:
            part.drop("both_safe" if safe[0] else "both_unsafe")
            continue
        rows.append({"prompt": [{"role": "user", "content": prompt}],
                     "chosen": [{"role": "assistant", "content": responses[chosen]}],
                     "rejected": [{"role": "assistant", "content": responses[1 - chosen]}]})
    part.kept = len(rows)
    return rows
