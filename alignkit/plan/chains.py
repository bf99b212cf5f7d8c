"""Chained stages (a method's `init_from`): which run each chained run starts from.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from alignkit.contract.schema import join, plain
from alignkit.contract.train import InitConfig, TrainConfig
from alignkit.spec.model import Spec
from alignkit.plan.model import Job
from alignkit.plan.grid import hkey, norm_pref, same_value
from alignkit.plan.runs import local_path


class Chains:
    """Chained stages (a method's `init_from`): which run each chained run starts from.

    The upstream of a run of method M (init_from: {method: U}) is the run of U with the same other
    axes, except the dataset, preference and seed init_from names (the upstream's own values; a
    dotted `dataset.*` axis then is the upstream's own too); a dotted `method.*` axis is U's own
    unless both carry it (then the values must match). The chained run depends on it, names it in
    config["init"] (so its id follows the upstream's), and its method label shows the chain
    (`sft>dpo`). An `init_from.adapter` run starts from that adapter: no upstream job, its source
    in config["init"]."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.runs: dict[tuple, list[tuple[dict[str, Any], Job]]] = {}
        # the methods some chain starts from: only their runs are looked up
        self.upstreams = {m.init_from.method for m in spec.methods.values() if m.init_from is not None}
        self.upstreams.discard(None)  # an init_from.adapter has no upstream run

    def upstream_method(self, method: str) -> str | None:
        init = self.spec.methods[method].init_from
        return init.method if init is not None else None

    def depth(self, method: str) -> int:
        n, up = 0, self.upstream_method(method)  # a loop, not recursion: the spec check bounds the chain
        while up is not None:
            n, up = n + 1, self.upstream_method(up)
        return n

    @staticmethod
    def _key(method: str, p: dict[str, Any]) -> tuple:
        # dotted method.* and dataset.* axes are compared in find (an upstream on another dataset has its own)
        return (method, *((a, hkey(p[a])) for a in p if a != "method" and not a.startswith(("method.", "dataset."))))

    def _upstream_point(self, p: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The upstream run's axes as init_from names them, and the dotted prefixes compared as well."""
        init = self.spec.methods[p["method"]].init_from
        own = {a: getattr(init, a) for a in init.AXES if getattr(init, a) is not None}
        if "preference" in own:
            own["preference"] = norm_pref(own["preference"])
        compared = ("method.",) if "dataset" in own else ("method.", "dataset.")
        return {**p, **own}, compared

    def add(self, p: dict[str, Any], job: Job) -> None:
        if p["method"] not in self.upstreams:
            return
        self.runs.setdefault(self._key(p["method"], p), []).append((p, job))

    def find(self, p: dict[str, Any], name: str, once: Any) -> Job | None:
        up = self.upstream_method(p["method"])
        want, compared = self._upstream_point(p)
        found = [job for q, job in self.runs.get(self._key(up, want), [])
                 if all(same_value(q[a], want[a]) for a in q if a.startswith(compared) and a in want)]
        at = join(join(join("methods", p["method"]), "init_from"), "method")
        if len(found) == 1:
            return found[0]
        if not found:
            named = {a: want[a] for a in want if a in ("dataset", "preference", "seed") and want[a] != p[a]}
            which = ", ".join(f"{a} {v}" for a, v in named.items())
            which = f" ({which}) and" if which else ""
            once(("chain", p["method"]), at, f"run '{name}' starts from a '{up}' run with{which} the same other axes, which the grid "
                             f"does not train (excluded or never listed): add it, or exclude the chained run too")
        else:
            once(("chain", p["method"]), at, f"run '{name}' matches {len(found)} '{up}' runs ({', '.join(j.name for j in found[:3])}): "
                             f"sweep the dotted method axes of both methods together, or of one only")
        return None

    def compatible(self, config: TrainConfig, up: Job, once: Any) -> bool:
        """continue trains the upstream adapter itself: a dotted `method.lora.*` axis must not
        give the chained run another LoRA shape than its upstream's (the spec check covers the rest)."""
        method = config.axes["method"]
        if self.spec.methods[method].init_mode != "continue" or config.method.lora == up.config.method.lora:
            return True
        once(("chain-lora", method), join(join("methods", method), "lora"),
             f"run '{up.name}' has lora {plain(up.config.method.lora)}, its continued run "
             f"{plain(config.method.lora)}: init_mode continue trains the upstream adapter (sweep method.lora.* "
             f"of both methods together, or use init_mode: merge)")
        return False

    def chained(self, config: TrainConfig, up: Job) -> TrainConfig:
        """The chained run's config: its upstream named by id (content hash), the chain in its label."""
        m = self.spec.methods[config.axes["method"]]
        axes = {**config.axes, "method": f"{up.config.axes['method']}>{config.axes['method']}"}
        return dataclasses.replace(config, axes=axes, init=InitConfig(job=up.id, mode=m.init_mode))

    def adapter_start(self, config: TrainConfig) -> TrainConfig:
        """An `init_from.adapter` run's config: the adapter's resolved source (an absolute local path
        or a hub id, with its revision) in config.init, so its id follows the adapter named."""
        m = self.spec.methods[config.axes["method"]]
        init = InitConfig(adapter=local_path(self.spec, m.init_from.adapter), mode=m.init_mode,
                          revision=m.init_from.revision)
        return dataclasses.replace(config, init=init)
