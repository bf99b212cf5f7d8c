"""The judge stage's typed config (what the compiler writes to config.json) and its loader.

Torch-free. The judged benchmarks carry their judge's resolved client settings under "judge"
(jobs/judge/judges.py validates those); results go through alignkit.contract.eval's result store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from alignkit.contract.eval import BenchmarkConfig, load_strict


@dataclass(frozen=True)
class JudgeTarget:
    job: str  # the eval job whose generations are judged


@dataclass(frozen=True)
class JudgeConfig:
    stage: Literal["judge"]
    target: JudgeTarget
    benchmarks: dict[str, BenchmarkConfig]
    axes: dict[str, Any] = field(default_factory=dict)  # labels


def load_judge(data: Any, file: str = "config.json") -> JudgeConfig:
    return load_strict(JudgeConfig, data, file)
