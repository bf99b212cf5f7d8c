"""`plan`'s warnings: settings that run, but that the spec's author should look at. Printed as
`alignkit plan: warning: ...`, never a refusal (`submit` does not check them).

* generation length vs a model's context (alignkit/plan/context_check.py)
* a method's settings outside its documented recommendations (Method.advice, e.g. KTO's batch and
  weight rules), one line per method profile
"""

from __future__ import annotations

from typing import Any

from alignkit.plan import context_check


def method_lines(plan: Any) -> list[str]:
    from alignkit.plugins.methods import METHODS, method

    seen: dict[str, list[str]] = {}
    for job in plan.jobs:
        cfg = job.config.method if job.stage == "train" else None
        if cfg is None or cfg.name in seen or cfg.type not in METHODS.names():
            continue
        seen[cfg.name] = [f"{plan.spec_path}: methods.{cfg.name}.{line}" for line in method(cfg.type).advice(cfg)]
    return [line for lines in seen.values() for line in lines]


def lines(plan: Any) -> list[str]:
    return method_lines(plan) + context_check.warnings([*plan.jobs, *plan.awaiting], plan.spec_path)
