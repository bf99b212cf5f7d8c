"""Synthetic studies with PLANTED effects, for the findings tests (tests/unit/test_findings.py,
test_report.py). Built on tests.fixtures.synthetic_study.write_study with a `value` function: each
metric = base + direction × scale × goodness + Gaussian seed noise (sd = NOISE × scale), where
"goodness" is the sum of the planted effects below. A lower-is-better metric (red_instruct asr)
moves down when goodness goes up, so a test can check verdicts respect direction.

Planted (goodness units; NOISE = 0.01):
  model offsets          llama-7b −0.10, vicuna-7b 0, mistral-7b +0.10, mistral-7b-instruct +0.05
  method                 DPO − SFT = +0.05 on instruct bases, −0.05 on pre-trained bases
  dataset                BeaverTails − HH-RLHF = +0.04 under SFT, exactly 0 under DPO
  PEFT                   QLoRA − LoRA = exactly 0 (the planted "no detectable difference")
  preference             harmless − helpful = +0.05 under DPO on the safety benchmarks, else 0
  mixture                harmless+helpful = the mean of its parts − 0.05
  merge                  the best of its inputs + 0.03
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.fixtures.synthetic_study import write_study

NOISE = 0.01
BASE = {"mmlu": (0.55, 0.1), "bbh": (0.39, 0.1), "alpaca_eval": (7.0, 5.0), "realtoxicity": (1.5, 2.0),
        "red_instruct": (30.0, 20.0)}
HIGHER_IS_BETTER = {"mmlu": True, "bbh": True, "alpaca_eval": True, "realtoxicity": True, "red_instruct": False}
MODEL = {"llama-7b": -0.10, "vicuna-7b": 0.0, "mistral-7b": 0.10, "mistral-7b-instruct": 0.05, "tiny-llama": 0.0}
INSTRUCT = {"vicuna-7b", "mistral-7b-instruct", "tiny-llama"}
SAFETY = {"realtoxicity", "red_instruct"}


def goodness(bench: str, axes: dict[str, Any]) -> float:
    pref = str(axes["preference"])
    if "+" in pref:  # a mixture: the mean of its parts, minus the planted penalty
        parts = pref.split("+")
        return sum(goodness(bench, {**axes, "preference": p}) for p in parts) / len(parts) - 0.05
    g = MODEL.get(axes["model"], 0.0)
    if axes["method"] == "dpo":
        g += 0.05 if axes["model"] in INSTRUCT else -0.05
    if axes["dataset"] == "beavertails" and axes["method"] == "sft":
        g += 0.04
    if pref == "harmless" and axes["method"] == "dpo" and bench in SAFETY:
        g += 0.05
    return g


def value(bench: str, axes: dict[str, Any], step: int, rng: random.Random, inputs: list[dict[str, Any]]) -> float:
    g = max(goodness(bench, a) for a in inputs) + 0.03 if inputs else goodness(bench, axes)
    base, scale = BASE[bench]
    sign = 1.0 if HIGHER_IS_BETTER[bench] else -1.0
    return round(base + sign * scale * (g + 0.02 * step / 700) + rng.gauss(0, NOISE * scale), 6)


def full_size(root: Path, **kw: Any) -> dict[str, Any]:
    """The paper's design: 4 models × 2 datasets × 2 preferences × 2 methods × 2 PEFT × 5 seeds (320
    runs), the harmless+helpful mixture on the Mistral models with BeaverTails/QLoRA, and the paper's
    merges on the Mistral models with BeaverTails; eval at step 100 and the final step (700)."""
    args = dict(models=("llama-7b", "vicuna-7b", "mistral-7b", "mistral-7b-instruct"),
                datasets=("hh-rlhf", "beavertails"), pefts=("lora", "qlora"), seeds=(0, 1, 2, 3, 4),
                steps=(100,), max_steps=700, checkpoint_files=False, value=value,
                include=({"model": ("mistral-7b", "mistral-7b-instruct"), "dataset": ("beavertails",),
                          "preference": ("harmless+helpful",), "peft": ("qlora",)},),
                merge_models=("mistral-7b", "mistral-7b-instruct"), merge_datasets=("beavertails",))
    args.update(kw)
    return write_study(root, **args)


def smoke_shaped(root: Path, **kw: Any) -> dict[str, Any]:
    """sweeps/smoke.yaml's shape: tiny-llama, BeaverTails, helpful/harmless × SFT/DPO × LoRA/QLoRA ×
    2 seeds, checkpoints 10 and final (20), SLERP and DARE merges. Not the paper's models."""
    args = dict(models=("tiny-llama",), datasets=("beavertails",), preferences=("helpful", "harmless"),
                pefts=("lora", "qlora"), seeds=(0, 1), steps=(10,), max_steps=20, value=value, paper_names=False)
    args.update(kw)
    return write_study(root, **args)
