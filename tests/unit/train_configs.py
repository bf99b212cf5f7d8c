"""Resolved "train" configs (docs/contract.md) on the tiny model and the smoke data, for tests."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "assets" / "tiny-llama"
SMOKE = ROOT / "assets" / "smoke-data"
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

QLORA = {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16",
         "storage_dtype": "bfloat16"}


def train_config(kind: str = "sft", peft: str = "lora", *, max_steps: int = 6, save_steps: int = 3,
                 seed: int = 0, deepspeed_stage: int = 0, batch_size: int = 8, per_device_batch_size: int = 4,
                 logging_steps: int = 1, **overrides) -> dict:
    """A small but complete train config. `overrides` replace keys of method/training by name."""
    method = {
        "name": kind, "type": kind,
        "learning_rate": 2e-3 if kind == "sft" else 5e-3,
        "lr_scheduler": "constant" if kind == "sft" else "cosine", "warmup_ratio": 0.0,
        "batch_size": batch_size, "per_device_batch_size": per_device_batch_size,
        "max_grad_norm": 1.0, "weight_decay": 0.0, "optimizer": "paged_adamw_32bit",
        "adam_beta1": 0.9, "adam_beta2": 0.999, "max_length": 96,
        "completion_only_loss": True,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ALL_LINEAR},
    }
    if kind == "dpo":  # the fields only DPO has (alignkit/plugins/methods/dpo.py)
        method.update(beta=0.1, max_prompt_length=48)
    training = {"max_steps": max_steps, "save_steps": save_steps, "deepspeed_stage": deepspeed_stage,
                "gradient_checkpointing": False, "packing": False, "precompute_ref_log_probs": False,
                "liger": "auto", "logging_steps": logging_steps}
    for key, value in overrides.items():
        target = method if key in method or key in ("beta", "loss_type", "label_smoothing") else training
        target[key] = value
    config = {
        "stage": "train",
        "axes": {"model": "tiny-llama", "dataset": "beavertails", "preference": "harmless", "method": kind,
                 "peft": peft, "seed": seed},
        "model": {"name": "tiny-llama", "source": str(TINY), "revision": "main", "template": "chat_template",
                  "kind": "instruct", "dtype": "bfloat16"},
        "dataset": {"name": "beavertails", "format": "beavertails", "source": str(SMOKE / "pku-saferlhf"),
                    "revision": "main", "split": "train", "subsets": None, "limit": None},
        "preference": ["harmless"],
        "method": method,
        "peft": {"name": peft, "quantization": copy.deepcopy(QLORA) if peft == "qlora" else None},
        "training": training,
        "seed": seed,
    }
    return config


def typed(config: dict):
    """The typed TrainConfig of a plain one (alignkit.contract)."""
    from alignkit.contract import parse

    return parse(config, "test config")


def typed_dataset(dataset: dict):
    """The typed dataset section of a plain one (what a TrainConfig holds as `dataset`)."""
    from alignkit.contract import ContractError
    from alignkit.contract.schema import Problems, from_dict, is_missing
    from alignkit.contract.train import DatasetConfig

    problems = Problems("test dataset", {})
    out = from_dict(DatasetConfig, dataset, "dataset", problems)
    if problems.items or is_missing(out):
        raise ContractError("\n".join(problems.items) or "test dataset: unreadable")
    return out


class StopAtStep(threading.Event):
    """A stop request that arrives at optimizer step k: the job reads the event once per step."""

    def __init__(self, k: int):
        super().__init__()
        self.k, self.reads = k, 0

    def is_set(self) -> bool:
        self.reads += 1
        return self.reads >= self.k
