"""Content-hash job ids: the sha256 of the canonical JSON of what affects a job's result.

Labels (names, axes, tracking, prices) are left out at any depth; the same resolved config gives
the same id whatever the YAML's key order, formatting or axis order, and since a job names its
inputs by id, a change upstream changes its dependents' ids too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from alignkit.plan.canonical import Encoder


ID_LEN = 12
# What names, prices or reports things, not what a job computes: left out of job ids at any depth.
# `tracking` (where a run is reported) never changes a result, so a new tracker reuses finished jobs.
LABEL_KEYS = ("name", "axes", "input_axes", "paper_name", "price_per_million_tokens", "tracking")


def identity(value: Any) -> Any:
    """The part of a config that affects the result: labels (names, axes, tracking) are dropped."""
    if isinstance(value, dict):
        return {k: identity(v) for k, v in value.items() if k not in LABEL_KEYS}
    if isinstance(value, (list, tuple)):
        return [identity(v) for v in value]
    return value


def job_id(config: dict, encoder: Encoder | None = None) -> str:
    """The sha256 of the canonical JSON of what affects the result. An `id_encoder()` gives the
    same digest, hashing the sub-configs it was told are shared once (the compiler's path)."""
    if encoder is not None:
        return encoder.sha256_hex(config)[:ID_LEN]
    canonical = json.dumps(identity(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:ID_LEN]


def id_encoder() -> Encoder:
    return Encoder(canonical=True, drop=LABEL_KEYS)
