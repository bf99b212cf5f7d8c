"""The train stage's config.json and train_metrics.json, typed (docs/contract.md "train").

Every class mirrors what alignkit/plan/ writes; defaults are not restated here: the model,
dataset, PEFT and training sections are the spec's own dataclasses plus their `name`, and the
method section is the registered method's fields class plus `name` (alignkit/plugins/methods/).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, Optional

from alignkit.contract.common import ModelConfig, named
from alignkit.plugins.methods import METHODS
from alignkit.contract.methods import CommonFields
from alignkit.contract.schema import Problems, join
from alignkit.contract.serial import at_default
from alignkit.contract.sections import DatasetSpec, PeftSpec, QuantSpec, TrackingSpec, TrainingSpec, ValidationSpec


DatasetConfig = named(DatasetSpec)  # with `files` and `validation` (ValidationSpec) when a study uses them
PeftConfig = named(PeftSpec)
TrainingConfig = TrainingSpec  # `eval_steps` written only with validation
ValidationConfig = ValidationSpec
QuantConfig = QuantSpec


@dataclass(frozen=True)
class TrackingConfig(TrackingSpec):
    sweep: Optional[str] = None
    run_name: Optional[str] = None


@dataclass(frozen=True)
class MethodConfig(CommonFields):
    """Parsed as the registered method's config class (its fields + name), picked by `type`."""

    @classmethod
    def __variant__(cls, value: Any, path: str, problems: Problems) -> Optional[tuple[type, Any]]:
        kind = value.get("type") if isinstance(value, dict) else None
        if not isinstance(kind, str) or kind not in METHODS:
            problems.add(join(path, "type"), f"unknown method type {kind!r} (known: {', '.join(METHODS.names())})")
            return None
        return METHODS.get(kind).config_class(), value


@dataclass(frozen=True, kw_only=True)  # keyword-only: `job` keeps its place first, as in every config.json
class InitConfig:
    """A chained run's start (docs/methods.md "Chained stages"): the upstream train job's id, or an
    adapter that exists already (an absolute local path or a hub id at `revision`), and whether
    that adapter is trained on (`continue`) or merged into the base under a fresh one. Only the
    keys given are written (a run from an upstream job: exactly job and mode, as before)."""

    job: Optional[str] = None
    mode: Literal["continue", "merge"]
    adapter: Optional[str] = None
    revision: Optional[str] = None

    def __unwritten__(self) -> tuple[str, ...]:
        return at_default(self, "job", "adapter", "revision")


@dataclass(frozen=True)
class TrainConfig:
    stage: Literal["train"]
    axes: dict[str, Any]
    model: ModelConfig
    dataset: DatasetConfig
    preference: tuple[str, ...]
    method: MethodConfig
    peft: PeftConfig
    training: TrainingConfig
    seed: int
    tracking: Optional[TrackingConfig] = None  # a label: where the run is reported
    init: Optional[InitConfig] = None  # chained runs only (absent from other configs)
    # num_train_epochs with evals at fractions of training: the job saves an adapter at each one's step
    save_fractions: Optional[tuple[float, ...]] = None  # (absent from other configs)

    def __unwritten__(self) -> tuple[str, ...]:  # each only when set (plain code: one per run of a plan)
        if self.tracking is None and self.init is None and self.save_fractions is None:
            return ("tracking", "init", "save_fractions")
        return at_default(self, "tracking", "init", "save_fractions")

    @property
    def eval_steps(self) -> Optional[int]:
        """How often validation runs: training.eval_steps, else save_steps; None without validation."""
        if self.dataset.validation is None:
            return None
        return self.training.eval_steps or self.training.save_steps


@dataclass(frozen=True)
class ValidationPoint:
    step: int
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)  # the method's, e.g. reward_accuracy


@dataclass(frozen=True)
class TrainMetrics:
    """The parts of train_metrics.json that other stages and collect read (the file holds more:
    docs/training.md)."""

    method: str
    steps: int
    max_steps: int
    loss_curve: tuple[dict[str, Any], ...]
    first_loss: Optional[float]
    final_loss: Optional[float]
    checkpoints: tuple[int, ...]
    substitutions: tuple[dict[str, Any], ...] = ()
    validation: Optional[dict[str, Any]] = None  # {"curve": [{"step", "loss", ...}], "final": {...}}

    @classmethod
    def from_json(cls, data: dict) -> "TrainMetrics":
        keep = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in keep})
