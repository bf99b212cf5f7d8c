"""plan's `summary.reference_passes`: how many DPO runs of a study share one reference pass.

The rule (which runs share, and the pass's content address) is the contract's
(alignkit/contract/reference.py); this groups a compiled plan's train jobs by it without hashing
JSON per job.
"""

from __future__ import annotations

from typing import Any

from alignkit.contract.reference import SHARED_METHODS, pass_material, shareable


def _frozen(value: Any) -> Any:
    """A hashable copy (plan groups by it: cheaper than hashing JSON for 100,000 jobs)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def summarize(jobs: list[Any]) -> dict[str, Any]:
    """plan's `summary.reference_passes`: distinct passes, the runs reading them, runs computing their own."""
    keys: dict[Any, int] = {}  # the same grouping as pass_key, without hashing JSON per job
    inline = 0
    # runs share their sub-config objects (compile.py builds each once): group each combination once
    seen: dict[tuple, Any] = {}
    for job in jobs:
        if job.stage != "train":
            continue
        cfg = job.config
        gpus = job.resources.gpus * job.resources.nodes
        ident = (gpus, cfg.preference, *(id(getattr(cfg, k)) for k in ("model", "dataset", "peft", "method", "training")),
                 cfg.init)
        if ident not in seen:
            seen[ident] = None if shareable(cfg, gpus) else _frozen(pass_material(cfg, None, None))
        key = seen[ident]
        if key is None:
            inline += cfg.method.type in SHARED_METHODS  # a DPO run that cannot share
            continue
        keys[key] = keys.get(key, 0) + 1
    return {"reference_passes": len(keys), "reference_pass_runs": sum(keys.values()),
            "reference_inline_runs": inline}
