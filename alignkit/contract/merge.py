"""The merge stage's config.json and merge.json, typed (docs/contract.md "merge")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from alignkit.contract.train import ModelConfig


@dataclass(frozen=True)
class MergeSection:
    name: str
    method: str  # slerp | dare_ties | dare_linear | ties | linear (jobs/merge/methods.py checks parameters)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MergeConfig:
    stage: Literal["merge"]
    axes: dict[str, Any]
    model: ModelConfig
    merge: MergeSection
    inputs: tuple[str, ...]  # train job ids, in combine order
    input_axes: tuple[dict[str, Any], ...] = ()  # a label: each input's axes


@dataclass(frozen=True)
class MergeResult:
    """merge.json's main fields (the file holds provenance and timings too)."""

    method: str
    name: str
    parameters: dict[str, Any]
    seed: int
    inputs: tuple[dict[str, Any], ...]
    dtype: str
    model_dir: str

    @classmethod
    def from_json(cls, data: dict) -> "MergeResult":
        keep = {"method", "name", "parameters", "seed", "inputs", "dtype", "model_dir"}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in keep})
