"""Which DPO runs of a study share one reference pass (the frozen base's log-probs of every
training pair), and the pass's content address. Login side: plain dicts, no torch.

A DPO run with a LoRA/QLoRA adapter scores each pair twice per step: the policy (adapter on) and
the reference (adapter off = the base). The reference's log-probs depend only on the base weights
as loaded (model, revision, dtype, quantization), the tokenized pairs (dataset, preference mix,
template, lengths) and DPO's length weighting: not on beta, the loss type, the learning rate, the
LoRA shape or the seed (a seed only reorders the same rows; the pass is keyed by row content). So
the runs of a study that agree on those reuse one pass (jobs/train/reference.py computes and stores it
under <sweep>/reference/<key>/; docs/training.md "Shared reference log-probs"). The plan's
summary of the passes a study shares is alignkit/plan/reference.py.

Not shared (the run computes its reference inline, as before): methods other than DPO (KTO's KL
term pairs each row with its batch neighbour, so it depends on the order; ORPO/CPO/SimPO have no
reference), chained runs (their reference is their upstream's result), DeepSpeed and multi-GPU
runs (TRL's precompute then gathers across ranks; one writer is then not enough to reason about).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from alignkit.contract import paths

SHARED_METHODS = ("dpo",)
REFERENCE_DIR = paths.REFERENCE  # under the sweep directory
_MODEL_KEYS = ("source", "revision", "dtype", "template")
_METHOD_KEYS = ("max_length", "max_prompt_length", "ld_alpha")  # what shapes the pairs or the reference's sum


def shareable(config: dict[str, Any], gpus: int = 1) -> str | None:
    """Why this train config's run cannot share a reference pass, or None when it can."""
    method, training = config.get("method") or {}, config.get("training") or {}
    if config.get("stage") != "train":
        return "not a train job"
    if method.get("type") not in SHARED_METHODS:
        return f"method type {method.get('type')!r} has no frozen-base reference to share"
    if config.get("init"):
        return "a chained run: its reference is its upstream's result"
    if training.get("deepspeed_stage", 0):
        return "DeepSpeed: the reference pass runs per rank"
    if gpus > 1:  # GPUs x nodes (0: a CPU job, one process)
        return f"{gpus} GPUs: the reference pass runs per rank"
    return None


def pass_material(config: dict[str, Any], model_dtype: str | None, quantization: dict | None) -> dict[str, Any]:
    model = {k: config["model"].get(k) for k in _MODEL_KEYS}
    if model_dtype is not None:
        model["dtype"] = model_dtype
    quant = (config.get("peft") or {}).get("quantization")
    if quantization is not None:
        quant = quantization
    dataset = {k: v for k, v in (config.get("dataset") or {}).items() if k != "name"}  # a label
    return {"model": model, "quantization": quant, "dataset": dataset,
            "preference": list(config.get("preference") or []),
            "method": {k: config["method"].get(k) for k in _METHOD_KEYS if config["method"].get(k) is not None},
            "format": 1}


def pass_key(config: dict[str, Any], gpus: int = 1, *, model_dtype: str | None = None,
             quantization: dict | None = None) -> str | None:
    """The content address of the reference pass this run reads, or None (not shareable).

    The plan calls it with the configured dtypes; the job with the dtypes it actually uses
    (`model_dtype`, `quantization` after jobs.train.stage.resolve's substitutions), so a CPU run never
    reads a GPU run's pass."""
    if shareable(config, gpus) is not None:
        return None
    material = pass_material(config, model_dtype, quantization)
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
