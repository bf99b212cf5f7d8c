"""The sweep spec's shape: one YAML file describes a whole study (docs/spec.md is the reference).

Strict nested frozen dataclasses with their defaults (the sections the jobs read too are the
contract's: alignkit/contract/sections.py); the limits the checks hold values to; `parse_time`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from alignkit.plugins.benchmarks import spec_class as benchmark_spec_class
from alignkit.contract.methods import CommonFields, LoraFields
from alignkit.contract.schema import Problems
from alignkit.contract.stages import STAGE_NAMES
from alignkit.contract.sections import (DatasetSpec, GenerationSpec, JudgeSpec, ModelSpec, PeftSpec,  # noqa: F401
                                        PriceSpec, TrackingSpec, TrainingSpec)


AXES = ("model", "dataset", "preference", "method", "peft", "seed")
# The sections of a run's resolved config that a dotted axis (`method.beta`) may path into, and
# the spec mapping each one's entries live in (training: one section for every run).
SECTIONS = {"model": "models", "dataset": "datasets", "method": "methods", "peft": "peft", "training": None}
# What a dataset provides when it lists no subsets/files: BeaverTails' built-in derivations
# (alignkit/plugins/formats/beavertails.py), HH-RLHF's two folders (alignkit/plugins/formats/hh_rlhf.py SUBSETS)
BEAVERTAILS_PREFERENCES = ("helpful", "harmless")
HH_DEFAULT_PREFERENCES = ("helpful", "harmless")
RESERVED_PREFERENCES = ("original",)  # the base models' rows in collect
MERGE_METHODS = ("slerp", "dare_ties", "dare_linear", "ties", "linear")
Scalar = Union[str, int]
# Names reach job names, file names and sbatch scripts: a letter or digit first (so never '.',
# '..' or an option), then letters, digits, '.', '_', '+', '-'; fullmatch, so no trailing newline.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}")
SEED_LIMIT = 2**32  # numpy's seeds are 32-bit (transformers.set_seed seeds numpy too)
# Per-stage resources: (smallest, largest) accepted; larger values are typos, not requests.
RESOURCE_LIMITS = {"gpus": (0, 64), "cpus": (1, 4096), "mem_gb": (1, 65_536), "nodes": (1, 1024),
                   "array_parallelism": (1, 1_000_000)}
MAX_TIME_MIN = 366 * 24 * 60  # a year
# Methods come from the registry (alignkit/plugins/methods/, one file per method): the spec's `methods:`
# entries are parsed by their `type:` into that method's fields class (CommonFields + its own).
LoraSpec = LoraFields
MethodSpec = CommonFields


# A benchmark: `type` plus the fields of every type in alignkit/plugins/benchmarks/ (one module per type,
# each with its own fields, defaults and checks); a field its type does not take is an error.
BenchmarkSpec = benchmark_spec_class()


@dataclass(frozen=True)
class EvalSpec:
    # steps (multiples of save_steps), fractions of training in (0, 1) and/or "final"
    checkpoints: tuple[Union[str, int, float], ...] = ("final",)
    base_models: bool = False  # also evaluate each untrained base model (the paper's "Original" rows)
    benchmarks: dict[str, BenchmarkSpec] = field(default_factory=dict)
    judges: dict[str, JudgeSpec] = field(default_factory=dict)
    generation: Optional[GenerationSpec] = None


@dataclass(frozen=True)
class MergeSpec:
    name: str
    method: str  # slerp | dare_ties | dare_linear | ties | linear (checked with a clear message)
    combine: dict[str, tuple[Scalar, ...]]  # axes that vary between inputs, e.g. preference: [harmless, helpful]
    parameters: dict[str, Any] = field(default_factory=dict)
    where: dict[str, Any] = field(default_factory=dict)  # only runs with these axis values
    evaluate: bool = True


@dataclass(frozen=True)
class ResourceSpec:
    gpus: Optional[int] = None
    cpus: Optional[int] = None
    mem_gb: Optional[int] = None
    time: Optional[Union[str, int]] = None  # "HH:MM:SS", "D-HH:MM:SS", "MM:SS" or minutes
    nodes: Optional[int] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    array_parallelism: Optional[int] = None  # SLURM array throttle (%N)
    estimate: Optional[Union[str, int]] = None  # expected run time, for GPU-hour estimates


@dataclass(frozen=True)
class ResourceOverride(ResourceSpec):
    """A stage's resources for the runs matching `where` (the fields are ResourceSpec's)."""

    stage: Literal[STAGE_NAMES] = field(kw_only=True)
    where: dict[str, Any] = field(default_factory=dict, kw_only=True)


@dataclass(frozen=True)
class ResourcesSpec:
    train: ResourceSpec = ResourceSpec()
    eval: ResourceSpec = ResourceSpec()
    merge: ResourceSpec = ResourceSpec()
    judge: ResourceSpec = ResourceSpec()
    overrides: tuple[ResourceOverride, ...] = ()


@dataclass(frozen=True)
class SelectSpec:
    """Which configuration to pick per group (collect writes selection.csv)."""

    metric: str  # a tidy-table metric, or validation_loss / validation_<metric>
    goal: Literal["min", "max"]
    over: tuple[str, ...]  # the axes chosen among, e.g. [method.lora.r, method.lora.alpha]
    by: tuple[str, ...] = ()  # one choice per group of these axes
    checkpoint: Scalar = "final"


@dataclass(frozen=True)
class TargetSpec:
    """An adapter or full model that exists already: evaluated like a trained run, no training."""

    source: str  # local path (relative to the spec file) or hub id
    type: Literal["adapter", "model"] = "adapter"
    revision: Optional[str] = None
    base: Optional[str] = None  # adapters: the name in `models` they were trained on
    axes: dict[str, Any] = field(default_factory=dict)  # label values, e.g. method: dpo


@dataclass(frozen=True)
class Spec:
    name: str
    models: dict[str, ModelSpec]
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    # named axes (AXES) and dotted paths into a run's config (`method.beta`): values of any type
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    peft: dict[str, PeftSpec] = field(default_factory=lambda: {"lora": PeftSpec()})
    training: TrainingSpec = TrainingSpec()
    zip: tuple[dict[str, tuple[Any, ...]], ...] = ()  # paired axes, advanced together
    include: tuple[dict[str, Any], ...] = ()  # extra sub-grids (e.g. mixture runs)
    exclude: tuple[dict[str, Any], ...] = ()  # drop grid points matching every key
    evals: EvalSpec = EvalSpec()
    merges: tuple[MergeSpec, ...] = ()
    targets: dict[str, TargetSpec] = field(default_factory=dict)  # evaluated without training
    select: Optional[SelectSpec] = None
    resources: ResourcesSpec = ResourcesSpec()
    tracking: Optional[TrackingSpec] = None  # null: no tracker (train_metrics.json only)
    output_dir: Optional[str] = None  # default runs/<name>, relative to the current directory
    profile: Optional[str] = None  # cluster profile used when --profile is not given
    max_jobs: Optional[int] = None  # refuse a plan beyond this many jobs (null: $ALIGNKIT_MAX_JOBS or 1,000,000)
    description: str = field(default="", metadata={"free_text": True})
    # filled by load_spec, not by the YAML (init=False: a YAML key of that name is an unknown key)
    path: Path = field(default=Path("."), compare=False, init=False)
    text: str = field(default="", compare=False, init=False)
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False, init=False)

    def problems(self) -> Problems:
        return Problems(str(self.path), self.lines)


_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(value: Union[str, int]) -> int:
    """SLURM time formats → minutes (rounded up). Raises ValueError on a malformed value."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    m = _TIME.match(str(value).strip())
    if not m:
        raise ValueError(f"malformed time {value!r} (use HH:MM:SS, D-HH:MM:SS or minutes)")
    days, a, b, c = m.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if any(p >= 60 for p in parts[1:]):
        raise ValueError(f"malformed time {value!r}: minutes and seconds must be below 60")
    if days is not None:  # D-HH[:MM[:SS]]
        h, mi, s = parts + [0] * (3 - len(parts))
        seconds = int(days) * 86400 + h * 3600 + mi * 60 + s
    elif len(parts) == 3:  # HH:MM:SS
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    elif len(parts) == 2:  # MM:SS, as SLURM reads it
        seconds = parts[0] * 60 + parts[1]
    else:  # MM
        seconds = parts[0] * 60
    if seconds <= 0:
        raise ValueError(f"time {value!r} must be positive")
    return -(-seconds // 60)
