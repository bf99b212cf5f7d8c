"""The typed contract between the compiler (login node) and the jobs (compute nodes).

`load(job_dir_or_config_path)` reads a job's config.json with the strict loader
(alignkit.contract.schema.from_dict) into the frozen class of its "stage": TrainConfig, MergeConfig
(alignkit/contract/train.py, merge.py), EvalConfig, JudgeConfig (eval.py, judge.py). An unknown
key, a missing one or a wrong type is a ContractError: one line naming the file and the key.
torch-free: both halves import it. Job-directory names: alignkit/contract/paths.py; the plug-in
registry and bases: registry.py, methods.py, benchmarks.py; what a compute node runs: entry.py.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from alignkit.contract import paths
from alignkit.contract.errors import UserError
from alignkit.contract.schema import Problems, from_dict, is_missing, one_line
from alignkit.contract.stages import STAGES

# Each stage's config module (the stage table: alignkit/contract/stages.py) is imported when a config
# of that stage is loaded (eval/judge check benchmark types first and raise their module's
# ContractError, also a UserError naming the file and key)


class ContractError(UserError):
    """A config.json that does not match its stage's contract (one line per problem)."""


def config_class(stage: str) -> type:
    s = STAGES[stage]
    return getattr(importlib.import_module(s.config_module), s.config_class)


def parse(data: Any, where: str) -> Any:
    """A config dict (as config.json holds it) -> its typed stage config; `where` names it in errors."""
    problems = Problems(where, {})
    stage = data.get("stage") if isinstance(data, dict) else None
    if stage not in STAGES:
        problems.add("stage", f"unknown stage {stage!r} (known: {', '.join(STAGES)})")
        raise ContractError(problems.items[0])
    s = STAGES[stage]
    if s.config_loader is not None:
        return getattr(importlib.import_module(s.config_module), s.config_loader)(data, where)
    config = from_dict(config_class(stage), data, "", problems)
    if problems.items or is_missing(config):
        raise ContractError("\n".join(problems.items) or f"{where}: unreadable config")
    return config


def load(path: str | Path) -> Any:
    """The typed config of a job directory (or of a config.json path)."""
    path = Path(path)
    if path.is_dir():
        path = path / paths.CONFIG
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ContractError(one_line(f"{path}: cannot read: {exc.strerror or exc}")) from None
    except ValueError as exc:
        raise ContractError(one_line(f"{path}: not JSON: {exc}")) from None
    return parse(data, str(path))


def expect(config: Any, cls: type, what: str) -> Any:
    """`config` if it is a `cls`; a plain dict (or anything else) is a TypeError: the jobs take typed
    configs only, and the one way from config.json's dict to one is `load`/`parse` (jobs/entry.py)."""
    if not isinstance(config, cls):
        raise TypeError(f"{what} takes a typed {cls.__name__} (alignkit.contract.load or parse), "
                        f"not a {type(config).__name__}")
    return config


def to_dict(config: Any) -> dict:
    """A typed config as the plain dict config.json holds (for what records or reports it)."""
    from alignkit.contract.serial import to_json

    return to_json(config)


__all__ = ["ContractError", "STAGES", "config_class", "expect", "load", "parse", "paths", "to_dict"]
