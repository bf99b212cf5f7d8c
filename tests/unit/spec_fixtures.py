"""A small valid spec (as a dict) that the spec and compiler tests mutate."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

BASE = {
    "name": "unit",
    "models": {
        "m1": {"source": "org/model-one", "template": "mistral", "kind": "pretrained"},
        "m2": {"source": "org/model-two", "template": "vicuna", "kind": "instruct"},
    },
    "datasets": {
        "hh": {"format": "hh_rlhf", "source": "Anthropic/hh-rlhf",
               "subsets": {"helpful": "helpful-base", "harmless": "harmless-base"}},
        "bt": {"format": "beavertails", "source": "PKU-Alignment/PKU-SafeRLHF"},
    },
    "methods": {
        "sft": {"type": "sft", "learning_rate": 2.0e-4,
                "lora": {"r": 64, "alpha": 16, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}},
        "dpo": {"type": "dpo", "learning_rate": 5.0e-5, "beta": 0.1, "lr_scheduler": "cosine",
                "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj"]}},
    },
    "peft": {"lora": {"quantization": None}, "qlora": {"quantization": {"quant_type": "nf4"}}},
    "training": {"max_steps": 700, "save_steps": 100},
    "grid": {"model": ["m1", "m2"], "dataset": ["hh", "bt"], "preference": ["helpful", "harmless"],
             "method": ["sft", "dpo"], "peft": ["lora", "qlora"], "seed": [0, 1]},
    "evals": {
        "checkpoints": [100, "final"],
        "judges": {"j": {"type": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m",
                         "api_key_env": "KEY"}},
        "benchmarks": {
            "mmlu": {"type": "lm_eval", "task": "mmlu", "num_fewshot": 5, "metric": "acc"},
            "ae": {"type": "alpaca_eval", "source": "tatsu-lab/alpaca_eval", "judge": "j"},
        },
    },
    "merges": [{"name": "slerp", "method": "slerp", "combine": {"preference": ["harmless", "helpful"]},
                "parameters": {"t": 0.5}}],
    "resources": {"train": {"gpus": 1, "time": "02:00:00"}},
}


def base() -> dict:
    return copy.deepcopy(BASE)


def write(tmp_path: Path, data: dict | str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path
