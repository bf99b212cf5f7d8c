"""Helpers for the eval/judge tests: tiny LoRA adapters and job directories laid out as the sweep has them."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "assets" / "tiny-llama"
SMOKE = REPO / "assets" / "smoke-eval"
TOX = REPO / "assets" / "tiny-toxicity"
MODEL = {"name": "tiny-llama", "source": str(TINY), "revision": "main", "template": "vicuna",
         "kind": "pretrained", "dtype": "float32"}


def make_adapter(out: Path, seed: int, applied: bool = True, target_modules=("q_proj", "v_proj")) -> Path:
    """A LoRA adapter on the tiny model, saved as training saves one (PEFT's default init: B = 0).

    applied=True then fills B with random values large enough to move greedy generations;
    applied=False leaves B at zero, an adapter that changes nothing.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(TINY)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=list(target_modules)))
    if applied:
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.5)
    model.save_pretrained(out)
    return out


def benchmarks(judge: dict | None = None, lm_eval: bool = True, safety: bool = True) -> dict:
    tasks = str(SMOKE / "tasks")
    b: dict = {}
    if lm_eval:
        b["mmlu"] = {"type": "lm_eval", "task": "smoke_mmlu", "include_path": tasks, "num_fewshot": 1,
                     "metric": "acc", "limit": 6, "chat_template": False}
        b["bbh"] = {"type": "lm_eval", "task": "smoke_bbh", "include_path": tasks, "num_fewshot": 1,
                    "metric": "exact_match", "limit": 4, "chat_template": False}
    if safety:
        b["realtoxicity"] = {"type": "realtoxicity", "source": str(SMOKE / "realtoxicityprompts" / "prompts.jsonl"),
                             "num_prompts": 4, "max_new_tokens": 6, "classifier": str(TOX)}
        b["red_instruct"] = {"type": "red_instruct", "source": str(SMOKE / "red-instruct"), "num_prompts": 3,
                             "max_new_tokens": 6}
        b["alpaca_eval"] = {"type": "alpaca_eval", "source": str(SMOKE / "alpaca_eval" / "alpaca_eval.json"),
                            "num_prompts": 3, "max_new_tokens": 6}
        if judge is not None:
            for k in ("red_instruct", "alpaca_eval"):
                b[k]["judge"] = dict(judge)
    return b


def eval_job(sweep: Path, target: str, checkpoints: list, bench: dict, kind: str = "adapter",
             name: str = "ev") -> tuple[Path, dict]:
    cfg = {"stage": "eval", "axes": {}, "model": dict(MODEL), "target": {"job": target, "kind": kind},
           "checkpoints": checkpoints, "benchmarks": bench}
    d = sweep / "jobs" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    return d, cfg


def train_job_with_adapters(sweep: Path, steps: list[int], final: bool = True, applied: bool = True,
                            name: str = "tr") -> Path:
    d = sweep / "jobs" / name
    for i, s in enumerate(steps):
        make_adapter(d / "checkpoints" / f"step-{s}", seed=i + 1, applied=applied)
    if final:
        make_adapter(d / "adapter", seed=100, applied=applied)
    return d
