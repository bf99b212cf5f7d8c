"""Anthropic HH-RLHF: rows {"chosen": transcript, "rejected": transcript}.

A transcript is "\\n\\nHuman: ...\\n\\nAssistant: ..." repeated. Both transcripts share every turn
but the last assistant turn; that shared prefix becomes the prompt messages, the two last turns
the chosen and rejected responses. The real data has a few dozen malformed rows; they are dropped
and counted by reason (see REASONS).
"""

from __future__ import annotations

import re
from typing import Any

from alignkit.plugins.formats import field, require_columns

ROWS = "preference"
SUBSETS = {"helpful": "helpful-base", "harmless": "harmless-base"}  # Anthropic/hh-rlhf's folders, when no subsets
FILES = False  # its preferences are folders (subsets) of one source, never files of their own

TURN = re.compile(r"\n\n(Human|Assistant):")
ROLES = {"Human": "user", "Assistant": "assistant"}

REASONS = {
    "malformed_transcript": "text before the first turn, or no turn at all",
    "empty_turn": "a turn with no text",
    "not_alternating": "two user or two assistant turns in a row",
    "no_assistant_turn": "a transcript that does not end with an assistant turn",
    "diverge_before_last_turn": "chosen and rejected differ before their last assistant turn",
    "identical": "chosen and rejected are the same",
}


class Malformed(Exception):
    """A row to drop; args[0] is the reason (a key of REASONS)."""


def parse_transcript(text: str) -> list[dict]:
    """"\\n\\nHuman: a\\n\\nAssistant: b" -> [{"role": "user", "content": "a"}, {"role": "assistant", ...}]."""
    pieces = TURN.split(text)
    if pieces[0].strip() or len(pieces) < 3:
        raise Malformed("malformed_transcript")
    messages = []
    for name, content in zip(pieces[1::2], pieces[2::2], strict=True):
        content = content.strip()
        if not content:
            raise Malformed("empty_turn")
        role = ROLES[name]
        if messages and messages[-1]["role"] == role or not messages and role != "user":
            raise Malformed("not_alternating")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "assistant":
        raise Malformed("no_assistant_turn")
    return messages


def to_pair(chosen_text: str, rejected_text: str) -> dict:
    chosen, rejected = parse_transcript(chosen_text), parse_transcript(rejected_text)
    if chosen[:-1] != rejected[:-1]:
        raise Malformed("diverge_before_last_turn")
    if chosen[-1]["content"] == rejected[-1]["content"]:
        raise Malformed("identical")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def detect(columns: set[str], first: dict) -> bool:
    """`format: auto`: chosen/rejected transcripts in Anthropic's "\\n\\nHuman: ..." layout."""
    chosen = first.get("chosen")
    return {"chosen", "rejected"} <= columns and isinstance(chosen, str) and chosen.startswith("\n\nHuman:")


def convert(ds: Any, label: str, part: Any) -> list[dict]:
    require_columns(ds, ("chosen", "rejected"), label)
    rows = []
    for i, row in enumerate(ds):
        part.rows += 1
        chosen, rejected = field(row, "chosen", str, label, i), field(row, "rejected", str, label, i)
        try:
            rows.append(to_pair(chosen, rejected))
        except Malformed as why:
            part.drop(why.args[0])
    part.kept = len(rows)
    return rows
