"""Content-hash job ids: the sha256 of the canonical JSON of what affects a job's result.

Labels (names, axes, tracking, prices) are left out at any depth; the same resolved config gives
the same id whatever the YAML's key order, formatting or axis order, and since a job names its
inputs by id, a change upstream changes its dependents' ids too. The serialiser itself (labels,
canonical text, id) is the contract's (alignkit/contract/serial.py); this is the compiler's fast
path to the same digest.
"""

from __future__ import annotations

from typing import Any

from alignkit.contract.serial import ID_LEN, LABEL_KEYS, config_id, identity
from alignkit.plan.canonical import Encoder

__all__ = ["ID_LEN", "LABEL_KEYS", "id_encoder", "identity", "job_id"]


def job_id(config: Any, encoder: Encoder | None = None) -> str:
    """The sha256 of the canonical JSON of what affects the result. An `id_encoder()` gives the
    same digest, hashing the sub-configs it was told are shared once (the compiler's path)."""
    if encoder is not None:
        return encoder.sha256_hex(config)[:ID_LEN]
    return config_id(config)


def id_encoder() -> Encoder:
    return Encoder(canonical=True, drop=LABEL_KEYS)
