"""The held-out validation split of `dataset.validation: {fraction: f, seed: s}`, by prompt.

A row is held out when its prompt is: the prompt's key (the first user turn, as the adapters give
it) hashed with the validation seed gives u in [0, 1), and u < f holds the prompt out. So no prompt
is on both sides (59 of the first 1,000 real HH-RLHF harmless-base test rows share their first human
turn with another row: a row-level split would train on the prompt it then validates on), the
split does not depend on the run seed, the limit or the order rows come in, and a prompt is held
out in every dataset, preference and mixture that contains it: a mixture's parts are held out
each on its own before mixing (the same rows their single-preference runs hold out), so a mixture
never trains on its parts' validation rows. The held-out share is f of the prompts on average,
not exactly ceil(f × rows); a part whose draw holds out nothing holds out its lowest-u prompt, so
a tiny fraction holds out at least one row.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence


def prompt_key(row: dict[str, Any]) -> str:
    """The first user turn's text, whitespace-trimmed (the conversation a row continues starts there):
    of `prompt`, or of `messages` for SFT conversations; a plain `text` row is its own key."""
    for turn in row.get("prompt") or row.get("messages") or []:
        if isinstance(turn, dict) and turn.get("role") == "user":
            return str(turn.get("content", "")).strip()
    text = row.get("text")
    return text.strip() if isinstance(text, str) else ""


def draw(key: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def held_out(rows: Sequence[dict[str, Any]], part_sizes: Sequence[int], fraction: float, seed: int) -> list[bool]:
    """Per row: whether it is held out. `part_sizes`: the consecutive parts (preferences) rows come in."""
    keys = [prompt_key(r) for r in rows]
    u = {k: draw(k, seed) for k in set(keys)}
    held = [u[k] < fraction for k in keys]
    start = 0
    for size in part_sizes:   # each part holds out at least one prompt
        part = range(start, start + size)
        if size and not any(held[i] for i in part):
            lowest = min((keys[i] for i in part), key=lambda k: (u[k], k))
            for i in part:
                held[i] = held[i] or keys[i] == lowest
        start += size
    chosen = {k for k, h in zip(keys, held, strict=True) if h}
    return [k in chosen for k in keys]   # a prompt held in one part is held in every part
