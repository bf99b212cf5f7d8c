"""Chained stages (a method's `init_from`): which run each chained run starts from.
"""

from __future__ import annotations

from typing import Any

from alignkit.contract.schema import join
from alignkit.spec.model import Spec
from alignkit.plan.model import Job
from alignkit.plan.grid import hkey, same_value


class Chains:
    """Chained stages (a method's `init_from`): which run each chained run starts from.

    The upstream of a run of method M (init_from: {method: U}) is the run of U with the same other
    axes; a dotted `method.*` axis is U's own unless both carry it (then the values must match).
    The chained run depends on it, names it in config["init"] (so its id follows the upstream's),
    and its method label shows the chain (`sft>dpo`)."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.runs: dict[tuple, list[tuple[dict[str, Any], Job]]] = {}
        # the methods some chain starts from: only their runs are looked up
        self.upstreams = {m.init_from.method for m in spec.methods.values() if m.init_from is not None}

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
        return (method, *((a, hkey(p[a])) for a in p if a != "method" and not a.startswith("method.")))

    def add(self, p: dict[str, Any], job: Job) -> None:
        if p["method"] not in self.upstreams:
            return
        self.runs.setdefault(self._key(p["method"], p), []).append((p, job))

    def find(self, p: dict[str, Any], name: str, once: Any) -> Job | None:
        up = self.upstream_method(p["method"])
        found = [job for q, job in self.runs.get(self._key(up, p), [])
                 if all(same_value(q[a], p[a]) for a in q if a.startswith("method.") and a in p)]
        at = join(join(join("methods", p["method"]), "init_from"), "method")
        if len(found) == 1:
            return found[0]
        if not found:
            once(("chain", p["method"]), at, f"run '{name}' starts from a '{up}' run with the same other axes, which the grid does "
                             f"not train (excluded or never listed): add it, or exclude the chained run too")
        else:
            once(("chain", p["method"]), at, f"run '{name}' matches {len(found)} '{up}' runs ({', '.join(j.name for j in found[:3])}): "
                             f"sweep the dotted method axes of both methods together, or of one only")
        return None

    def compatible(self, config: dict[str, Any], up: Job, once: Any) -> bool:
        """continue trains the upstream adapter itself: a dotted `method.lora.*` axis must not
        give the chained run another LoRA shape than its upstream's (the spec check covers the rest)."""
        method = config["axes"]["method"]
        if self.spec.methods[method].init_mode != "continue" or config["method"]["lora"] == up.config["method"]["lora"]:
            return True
        once(("chain-lora", method), join(join("methods", method), "lora"),
             f"run '{up.name}' has lora {up.config['method']['lora']}, its continued run "
             f"{config['method']['lora']}: init_mode continue trains the upstream adapter (sweep method.lora.* "
             f"of both methods together, or use init_mode: merge)")
        return False

    def chained(self, config: dict[str, Any], up: Job) -> dict[str, Any]:
        """The chained run's config: its upstream named by id (content hash), the chain in its label."""
        m = self.spec.methods[config["axes"]["method"]]
        axes = {**config["axes"], "method": f"{up.config['axes']['method']}>{config['axes']['method']}"}
        return {**config, "axes": axes, "init": {"job": up.id, "mode": m.init_mode}}
