"""The stages a study runs: the one table every part reads (spec checks, the plan, the launcher's
submission order, the CLI's --stage choices, profiles, the contract's config loader, the job entry: stage S runs jobs/S/stage.py).

Display order (status, plan, the CLI) is the order of STAGES; submission order is `submit_order`
(a merge is queued before the evals that follow it). torch-free: imports nothing outside the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Stage:
    name: str
    submit_order: int  # arrays are queued in this order (their dependencies first)
    config_module: str  # the contract module of its typed config.json ...
    config_class: str  # ... its class there ...
    config_loader: Optional[str]  # ... and that module's own loader, where it has one (checks types first)


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("train", 0, "alignkit.contract.train", "TrainConfig", None),
    Stage("eval", 2, "alignkit.contract.eval", "EvalConfig", "load_eval"),
    Stage("merge", 1, "alignkit.contract.merge", "MergeConfig", None),
    Stage("judge", 3, "alignkit.contract.judge", "JudgeConfig", "load_judge"),
)}
STAGE_NAMES = tuple(STAGES)  # ("train", "eval", "merge", "judge")
