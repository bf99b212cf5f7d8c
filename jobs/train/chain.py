"""Chained stages on the job side: a train job that starts from another train job's result.

config.init = {"job": <upstream train id>, "mode": "continue" | "merge"} (docs/methods.md
"Chained stages"), or {"adapter": <absolute local folder or hub id>, ["revision": ...,] "mode": ...}
for a run that starts from an adapter trained elsewhere (on the run's own base model). The reference model of DPO-like methods must be the upstream (SFT) model, never
the raw base:

  continue  the base (4-bit for QLoRA, as the upstream trained on it) with the upstream adapter
            loaded trainable as PEFT's "default" adapter; no new adapter. TRL's DPOTrainer, given
            a PeftModel and no ref_model, copies "default" into a frozen "ref" adapter and computes
            the reference with it (trl 1.16 trainer/dpo_trainer.py, DPOTrainer.__init__ "elif
            is_peft_model(model) and ref_model is None" and `use_adapter(..., adapter_name="ref")`
            in the loss): reference = base + SFT adapter = the SFT model, one copy of the base.
  merge     the upstream's base exactly as it trained (jobs.base_weights: QLoRA dequantized) with
            the upstream adapter folded in (PEFT merge_and_unload, float32), saved once as
            <job>/init_model/ in the run's model dtype; the run loads that like any base (4-bit
            for QLoRA) and adds a fresh adapter, so the reference (adapter disabled) is the merged
            SFT model. Evals and merges of the run use init_model/ as its base
            (jobs.base_weights.of_train_job).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.contract import paths
from alignkit.contract.train import TrainConfig
from alignkit.contract.fsio import atomic_dir
from jobs.errors import JobFailure



def upstream_dir(job_dir: Path, config: TrainConfig) -> Path:
    """The finished upstream train job's directory (a sibling under <sweep>/jobs/)."""
    up = Path(job_dir).parent / config.init.job
    if not (up / paths.DONE).exists():
        raise JobFailure(f"init.job {config.init.job}: the upstream train job has not finished ({up / paths.DONE} missing)")
    if not (up / paths.ADAPTER / "adapter_config.json").is_file():
        raise JobFailure(f"init.job {config.init.job}: no adapter at {up / paths.ADAPTER}")
    return up


def start_adapter(job_dir: Path, config: TrainConfig) -> tuple[str, str | None]:
    """The adapter the run starts from (a folder or a hub id) and its hub revision: the finished
    upstream job's adapter, or init.adapter."""
    if config.init.adapter is None:
        return str(upstream_dir(job_dir, config) / paths.ADAPTER), None
    source = config.init.adapter
    if Path(source).is_absolute() and not (Path(source) / "adapter_config.json").is_file():
        raise JobFailure(f"init.adapter {source}: no adapter_config.json there")
    return source, config.init.revision


def _hub(revision: str | None) -> dict[str, str]:
    return {"revision": revision} if revision is not None else {}  # PEFT passes it to the hub download


def _start_base(job_dir: Path, config: TrainConfig):
    """The base the start adapter was trained on: the upstream's as it trained (its own init_model
    if chained), or for init.adapter this run's own base (the spec says the adapter was trained on it)."""
    from jobs import base_weights

    if config.init.adapter is None:
        return base_weights.of_train_job(upstream_dir(job_dir, config))
    return base_weights.of_train_config(config, None, str(Path(job_dir) / paths.CONFIG))


def merged_base(job_dir: Path, config: TrainConfig, model_dtype: str, is_main: bool) -> Path:
    """merge mode: <job>/init_model/, the upstream model with its adapter folded in (written once;
    a resumed attempt reuses it)."""
    out = Path(job_dir) / paths.INIT_MODEL
    if (out / "config.json").is_file() or not is_main:
        return out
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from jobs import base_weights

    adapter, revision = start_adapter(job_dir, config)
    bw = _start_base(job_dir, config)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = base_weights.load(bw, device).to(torch.float32)
    model = PeftModel.from_pretrained(model, adapter, **_hub(revision)).merge_and_unload()
    model = model.to(getattr(torch, model_dtype))
    model.config.dtype = getattr(torch, model_dtype)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(config.model.source, revision=config.model.revision).save_pretrained(tmp)
    del model
    return out


def continue_adapter(model: Any, job_dir: Path, config: TrainConfig) -> Any:
    """continue mode: the start adapter on the loaded base, trainable, as PEFT's "default"."""
    from peft import PeftModel

    adapter, revision = start_adapter(job_dir, config)
    return PeftModel.from_pretrained(model, adapter, is_trainable=True, **_hub(revision))


def adapter_values(model: Any) -> dict[str, Any]:
    """continue mode: the upstream adapter's exact trainable values, before the trainer is built."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def exact_start(model: Any, values: dict[str, Any]) -> None:
    """continue mode, QLoRA: TRL rounds the trainable adapter to bf16 for quantized models
    (DPOTrainer/KTOTrainer.__init__ "When using QLoRA ... converted to bf16"), after copying it
    into the frozen "ref" adapter; jobs.train.trl_adapter keeps adapters in fp32, so put the exact
    upstream values back: the policy starts as the SFT model (first DPO loss ln 2)."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in values and param.requires_grad:
                param.data = values[name].to(param.dtype).clone()


def check_reference(model: Any, method: Any) -> None:
    """continue mode: a method with a reference model needs its trainer's frozen copy of the
    upstream adapter ("ref", TRL's DPO/KTO trainers); without it the reference would be the raw base."""
    if method.reference_model and "ref" not in getattr(model, "peft_config", {}):
        raise JobFailure(f"init_mode continue: TRL's {method.name} trainer kept no 'ref' copy of the upstream adapter, "
                         f"so its reference would be the raw base; use init_mode: merge")
