"""Which DPO runs of a study share one reference pass (the frozen base's log-probs of every
training pair), and the pass's content address, from a run's typed TrainConfig. No torch.

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
from alignkit.contract.serial import to_json

SHARED_METHODS = ("dpo",)
REFERENCE_DIR = paths.REFERENCE  # under the sweep directory
_MODEL_KEYS = ("source", "revision", "dtype", "template")
_METHOD_KEYS = ("max_length", "max_prompt_length", "ld_alpha")  # what shapes the pairs or the reference's sum


def shareable(config: Any, gpus: int = 1) -> str | None:
    """Why this train config's run cannot share a reference pass, or None when it can."""
    if config.stage != "train":
        return "not a train job"
    if config.method.type not in SHARED_METHODS:
        return f"method type {config.method.type!r} has no frozen-base reference to share"
    if config.init is not None:
        return "a chained run: its reference is its upstream's result"
    if config.training.deepspeed_stage:
        return "DeepSpeed: the reference pass runs per rank"
    if gpus > 1:  # GPUs x nodes (0: a CPU job, one process)
        return f"{gpus} GPUs: the reference pass runs per rank"
    return None


def pass_material(config: Any, model_dtype: str | None, quantization: dict | None) -> dict[str, Any]:
    """What the pass depends on, as config.json writes it (so a key never depends on how it is read)."""
    model = {k: getattr(config.model, k) for k in _MODEL_KEYS}
    if model_dtype is not None:
        model["dtype"] = model_dtype
    quant = to_json(config.peft.quantization)
    if quantization is not None:
        quant = quantization
    dataset = {k: v for k, v in to_json(config.dataset).items() if k != "name"}  # a label
    method = {k: getattr(config.method, k, None) for k in _METHOD_KEYS}
    return {"model": model, "quantization": quant, "dataset": dataset, "preference": list(config.preference),
            "method": {k: v for k, v in method.items() if v is not None}, "format": 1}


def pass_key(config: Any, gpus: int = 1, *, model_dtype: str | None = None,
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
