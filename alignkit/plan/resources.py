"""A job's resources: the one dataclass, the built-in defaults, and how the layers resolve
(built-ins < profile < the spec's stage < matching overrides).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from alignkit.spec.model import ResourceSpec, parse_time
from alignkit.plan.grid import matches


# Used where neither the profile nor the spec says otherwise (docs/spec.md lists them).
BUILTIN_RESOURCES: dict[str, dict[str, Any]] = {
    "train": {"gpus": 1, "cpus": 8, "mem_gb": 64, "time": "04:00:00", "nodes": 1, "array_parallelism": 64},
    "eval": {"gpus": 1, "cpus": 8, "mem_gb": 64, "time": "04:00:00", "nodes": 1, "array_parallelism": 64},
    "merge": {"gpus": 0, "cpus": 8, "mem_gb": 64, "time": "01:00:00", "nodes": 1, "array_parallelism": 16},
    "judge": {"gpus": 0, "cpus": 2, "mem_gb": 8, "time": "02:00:00", "nodes": 1, "array_parallelism": 8},
}
_RESOURCE_KEYS = tuple(f.name for f in dataclasses.fields(ResourceSpec))  # what a layer may set
_SLURM_PLACEMENT = ("partition", "account", "qos", "constraint")  # profile-wide, overridable per stage


@dataclass(frozen=True)
class Resources:
    """A job's resolved resources: the fields of ResourceSpec (the spec's stages and overrides, a
    profile's defaults), each set, with `time` and `estimate` in minutes as time_min and estimate_min
    (tests/plan/test_resource_fields.py keeps the two lists one)."""

    gpus: int
    cpus: int
    mem_gb: int
    time_min: int
    nodes: int
    partition: str | None
    array_parallelism: int
    estimate_min: float
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None

    def key(self) -> tuple:
        """The resource class: jobs of one stage with the same key are submitted as one array."""
        return tuple(getattr(self, name) for name in _CLASS_FIELDS)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RESOLVED = {"time": "time_min", "estimate": "estimate_min"}  # a ResourceSpec field -> its Resources field
_CLASS_FIELDS = tuple(f.name for f in dataclasses.fields(Resources) if f.name != "estimate_min")  # not a class


class StageResources:
    """The compiler's resources: built-ins < profile < spec stage < matching overrides, one object per class."""

    def _stage_resources(self, stage: str, axes: dict[str, Any]) -> Resources:
        """resources(), made once per stage and the values of the axes its overrides look at."""
        where = self._override_axes.get(stage)
        if where is None:
            where = self._override_axes[stage] = [a for o in self.spec.resources.overrides if o.stage == stage
                                                  for a in o.where]
        key = (stage, *((a in axes, repr(axes.get(a))) for a in where)) if where else stage
        if key not in self._resources:
            self._resources[key] = self.resources(stage, axes)
        return self._resources[key]

    def resources(self, stage: str, axes: dict[str, Any]) -> Resources:
        merged = dict(BUILTIN_RESOURCES[stage], estimate=None,
                      **{k: getattr(self.profile, k) for k in _SLURM_PLACEMENT})
        layers: list[Any] = [self.profile.defaults.get(stage), getattr(self.spec.resources, stage)]
        layers += [o for o in self.spec.resources.overrides if o.stage == stage and matches(axes, o.where)]
        for layer in layers:
            if layer is None:
                continue
            for key in _RESOURCE_KEYS:
                value = getattr(layer, key, None)
                if value is not None:
                    merged[key] = value
        time_min = parse_time(merged["time"])
        estimate = parse_time(merged["estimate"]) if merged["estimate"] is not None else time_min
        return Resources(**{k: merged[k] for k in _RESOURCE_KEYS if k not in RESOLVED},
                         time_min=time_min, estimate_min=float(estimate))
