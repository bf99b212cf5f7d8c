"""The one serialiser of job configs: what config.json holds and what a job id hashes.

Both are made from the same typed stage config (the compiler builds it; a job parses it back):
config.json is its JSON (`to_json`: sorted keys, indent 2, as `fsio.atomic_write_json` writes every
file), the id the sha256 of that JSON's canonical text without the labels (LABEL_KEYS, at any
depth). A config class may leave some fields out of its JSON (`__unwritten__`, below): only ones
the loader reads back as the same value, so that `parse(to_json(config)) == config` (checked for
every job of every shipped study: tests/plan/test_golden_configs.py, test_studies_plan.py,
test_chain_plan.py). The compiler's fast path (alignkit/plan/canonical.py `Encoder`, each shared
sub-config encoded once) gives the same text: tests/plan/test_canonical.py.
The eval result store's keys (alignkit/contract/eval.py) drop the same labels.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from alignkit.contract.fsio import atomic_write_json

ID_LEN = 12
# What names, prices or reports things, not what a job computes: left out of ids at any depth.
# `tracking` (where a run is reported) never changes a result, so a new tracker reuses finished jobs.
LABEL_KEYS = ("name", "axes", "input_axes", "paper_name", "price_per_million_tokens", "tracking")


def at_default(obj: Any, *names: str) -> tuple[str, ...]:
    """Those of `names` (fields with a plain default) whose value is that default: what
    `__unwritten__` usually returns (the loader fills a missing key with its default, so leaving it
    out loses nothing). Called per job of a plan: plain dict lookups, no dataclasses.fields()."""
    fields, values = obj.__dataclass_fields__, obj.__dict__
    return tuple([n for n in names if values[n] == fields[n].default])


@functools.lru_cache(maxsize=None)
def layout(cls: type) -> tuple[tuple[str, ...], Any, bool]:
    """A config class's field names, its `__unwritten__` hook (None without one), and whether an
    instance's __dict__ holds exactly its fields, in order (a frozen dataclass without slots or
    init=False fields: then it is copied at C speed)."""
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields if f.init)
    return names, getattr(cls, "__unwritten__", None), len(names) == len(fields) and "__slots__" not in vars(cls)


def written(obj: Any) -> dict[str, Any]:
    """A typed config's keys as its JSON holds them (one level): every field, less those the class's
    `__unwritten__(self)` names (fields written only when set, so that the configs and ids of
    studies that never set them stay what they were)."""
    names, unwritten, plain_dict = layout(type(obj))
    out = obj.__dict__.copy() if plain_dict else {n: getattr(obj, n) for n in names}
    if unwritten is not None:
        for n in unwritten(obj):
            del out[n]
    return out


def to_json(value: Any) -> Any:
    """A typed config as the plain JSON value config.json holds (dataclasses as `written`)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = written(value)
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def identity(value: Any) -> Any:
    """The part of a value that affects a result: labels (names, axes, tracking) dropped at any depth;
    a dataclass read as all its fields (the eval result store's keys, alignkit/contract/eval.py, are
    made so; a job's id is its config.json's identity: `canonical`)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: identity(v) for k, v in value.items() if k not in LABEL_KEYS}
    if isinstance(value, (list, tuple)):
        return [identity(v) for v in value]
    return value


def canonical(value: Any) -> str:
    """The text ids hash: config.json's content without labels, sorted keys, no spaces, ASCII."""
    return json.dumps(identity(to_json(value)), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_id(config: Any) -> str:
    """A job's id: the first 12 hex digits of the sha256 of its canonical config."""
    return hashlib.sha256(canonical(config).encode()).hexdigest()[:ID_LEN]


def write_config(path: str | Path, config: Any) -> None:
    """A job's config.json (atomically), as `to_json` gives it."""
    atomic_write_json(path, to_json(config))
