"""The one serialiser of job configs: what config.json holds and what a job id hashes.

Both are made from the same config (a typed stage config of this package, or the dict the
compiler builds for one): config.json is its JSON (sorted keys, indent 2, as
`fsio.atomic_write_json` writes every file), the id the sha256 of its canonical JSON without the
labels (LABEL_KEYS, at any depth). The compiler's fast path (alignkit/plan/canonical.py `Encoder`,
each shared sub-config encoded once) gives the same text: tests/unit/test_canonical.py.
The eval result store's keys (alignkit/contract/eval.py) drop the same labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from alignkit.contract.fsio import atomic_write_json

ID_LEN = 12
# What names, prices or reports things, not what a job computes: left out of ids at any depth.
# `tracking` (where a run is reported) never changes a result, so a new tracker reuses finished jobs.
LABEL_KEYS = ("name", "axes", "input_axes", "paper_name", "price_per_million_tokens", "tracking")


def identity(value: Any) -> Any:
    """The part of a config that affects the result: labels (names, axes, tracking) dropped; a typed
    config's fields read as its dict."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: identity(v) for k, v in value.items() if k not in LABEL_KEYS}
    if isinstance(value, (list, tuple)):
        return [identity(v) for v in value]
    return value


def canonical(value: Any) -> str:
    """The text ids hash: sorted keys, no spaces, ASCII."""
    return json.dumps(identity(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_id(config: Any) -> str:
    """A job's id: the first 12 hex digits of the sha256 of its canonical config."""
    return hashlib.sha256(canonical(config).encode()).hexdigest()[:ID_LEN]


def write_config(path: str | Path, config: Any) -> None:
    """A job's config.json (atomically; a typed config written as the dict it parses back from)."""
    from alignkit.contract.schema import plain

    atomic_write_json(path, config if isinstance(config, dict) else plain(config))
