"""A thin layer over mergekit 0.1.5: our merge methods and parameters → a mergekit run.

The merge job (jobs/merge/stage.py) hands this module full models on disk (base + adapter folded in)
and, for task-vector methods, the base they were trained from. All merge maths is mergekit's;
this module only validates parameters, fills documented defaults and builds mergekit's config.

Precision: mergekit casts every input tensor to the config's `dtype` as it loads it
(mergekit/io/tasks.py LoadTensor.execute, via plan.py GatherTensors(dtype=config.dtype)), the
merge method computes in that dtype, and the result is cast to `out_dtype` only when written
(plan.py SaveTensor(dtype=out_dtype); merge.py sets config.json's torch_dtype from out_dtype).
Without `dtype` the inputs keep their stored dtype, so bf16 inputs would be combined in bf16.
We always pass dtype=float32 and out_dtype=the trained weights' dtype.

Methods (config["merge"]["method"]):
  slerp            two inputs; t=0 gives the first, t=1 the second (mergekit: base_model = input 0)
  linear           weighted average of the full models (mergekit normalises the weights)
  task_arithmetic  base + sum_i w_i * (input_i - base)
  ties             TIES: magnitude pruning to `density`, sign consensus, normalised by weights
  dare_ties        DARE random drop to `density` + rescale, then TIES sign consensus
  dare_linear      DARE random drop to `density` + rescale, then weighted sum of task vectors
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("slerp", "linear", "task_arithmetic", "ties", "dare_ties", "dare_linear")
# Methods whose inputs are task vectors relative to the base model (mergekit: base_model required).
TASK_VECTOR_METHODS = ("task_arithmetic", "ties", "dare_ties", "dare_linear")
SPARSIFYING_METHODS = ("ties", "dare_ties", "dare_linear")
# Shared mergekit switches a spec may set for task-vector methods; passed through unchanged.
_SHARED_SWITCHES = ("normalize", "rescale", "lambda", "int8_mask")

DEFAULT_T = 0.5
DEFAULT_DENSITY = 0.5


class MergeParameterError(ValueError):
    """A merge method or parameter that cannot work; the message names the key."""


@dataclass(frozen=True)
class MergeSpec:
    method: str
    n_inputs: int
    t: float | None = None
    weights: tuple[float, ...] = ()
    densities: tuple[float, ...] = ()
    switches: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_base(self) -> bool:
        return self.method in TASK_VECTOR_METHODS

    def resolved_parameters(self) -> dict[str, Any]:
        """Every parameter the merge used, defaults included (recorded in merge.json)."""
        if self.method == "slerp":
            return {"t": self.t}
        out: dict[str, Any] = {"weights": list(self.weights)}
        if self.method in SPARSIFYING_METHODS:
            out["density"] = list(self.densities)
        out.update(self.switches)
        return out


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MergeParameterError(f"merge.parameters.{key}: expected a number, got {value!r}")
    return float(value)


def _per_input(value: Any, key: str, n: int, default: float) -> tuple[float, ...]:
    """A scalar applies to every input; a list gives one value per input, in input order."""
    if value is None:
        return (default,) * n
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise MergeParameterError(f"merge.parameters.{key}: {len(value)} values for {n} inputs")
        return tuple(_number(v, f"{key}[{i}]") for i, v in enumerate(value))
    return (_number(value, key),) * n


def parse_spec(method: str, parameters: dict[str, Any] | None, n_inputs: int) -> MergeSpec:
    """Validate a merge config; defaults: t=0.5, weights 1/n each, density 0.5."""
    params = dict(parameters or {})
    if method not in METHODS:
        raise MergeParameterError(f"merge.method: {method!r} is not one of {', '.join(METHODS)}")
    if n_inputs < 1:
        raise MergeParameterError("inputs: a merge needs at least one input")
    if method == "slerp":
        if n_inputs != 2:
            raise MergeParameterError(f"inputs: slerp merges exactly 2 inputs, got {n_inputs}")
        t = _number(params.pop("t", DEFAULT_T), "t")
        if not 0.0 <= t <= 1.0:
            raise MergeParameterError(f"merge.parameters.t: {t} is outside [0, 1]")
        if params:
            raise MergeParameterError(f"merge.parameters.{sorted(params)[0]}: not a slerp parameter")
        return MergeSpec(method, n_inputs, t=t)
    # "weight" (singular, mergekit's name) is accepted as a synonym of "weights".
    weights = _per_input(params.pop("weights", params.pop("weight", None)), "weights", n_inputs,
                         1.0 / n_inputs)
    densities: tuple[float, ...] = ()
    if method in SPARSIFYING_METHODS:
        densities = _per_input(params.pop("density", None), "density", n_inputs, DEFAULT_DENSITY)
        for i, d in enumerate(densities):
            if not 0.0 < d <= 1.0:
                raise MergeParameterError(f"merge.parameters.density[{i}]: {d} is outside (0, 1]")
    switches = {}
    for key in _SHARED_SWITCHES:
        if key in params:
            switches[key] = params.pop(key)
    if method == "linear" and set(switches) - {"normalize"}:
        raise MergeParameterError(f"merge.parameters.{sorted(set(switches) - {'normalize'})[0]}: "
                                  "not a linear parameter")
    if params:
        raise MergeParameterError(f"merge.parameters.{sorted(params)[0]}: not a {method} parameter")
    if method == "linear" and abs(sum(weights)) < 1e-8:
        raise MergeParameterError("merge.parameters.weights: weights of a linear merge sum to 0")
    return MergeSpec(method, n_inputs, weights=weights, densities=densities, switches=switches)


def mergekit_config(spec: MergeSpec, inputs: list[Path], base: Path | None, dtype: str,
                    out_dtype: str) -> dict[str, Any]:
    """The mergekit YAML (as a dict) for this merge: computed in `dtype`, written in `out_dtype`."""
    if len(inputs) != spec.n_inputs:
        raise MergeParameterError(f"inputs: {len(inputs)} models for a spec of {spec.n_inputs}")
    paths = [str(p) for p in inputs]
    if spec.method == "slerp":
        # mergekit's slerp interpolates from base_model (t=0) to the other model (t=1).
        return {"merge_method": "slerp", "base_model": paths[0], "dtype": dtype, "out_dtype": out_dtype,
                "models": [{"model": paths[0]}, {"model": paths[1]}],
                "parameters": {"t": spec.t}}
    models = []
    for i, path in enumerate(paths):
        params: dict[str, Any] = {"weight": spec.weights[i]}
        if spec.densities:
            params["density"] = spec.densities[i]
        models.append({"model": path, "parameters": params})
    cfg: dict[str, Any] = {"merge_method": spec.method, "dtype": dtype, "out_dtype": out_dtype, "models": models}
    if spec.switches:
        cfg["parameters"] = dict(spec.switches)
    if spec.uses_base:
        if base is None:
            raise MergeParameterError(f"{spec.method} needs the base model")
        cfg["base_model"] = str(base)
    return cfg


def run_mergekit(cfg: dict[str, Any], out_dir: Path, seed: int, cuda: bool) -> None:
    """Run mergekit on full models already on disk; writes config.json + safetensors to out_dir."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    options = MergeOptions(cuda=cuda, copy_tokenizer=False, lazy_unpickle=False, low_cpu_memory=False,
                           allow_crimes=False, random_seed=seed, write_model_card=True, quiet=True)
    run_merge(MergeConfiguration.model_validate(cfg), out_path=str(out_dir), options=options)
