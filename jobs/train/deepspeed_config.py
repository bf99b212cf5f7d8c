"""DeepSpeed ZeRO configs for the training job (`training.deepspeed_stage`: 0 = no DeepSpeed, 2, 3).

The batch fields stay "auto": the HF Trainer fills them from its own arguments (per-device batch,
accumulation, world size), so there is one source of truth. That is only right when accelerate
sees the true world size, which jobs.train.distributed makes sure of on CPU.

Combinations (run here with 2 CPU processes over gloo unless marked otherwise):
  * ZeRO-2: SFT + LoRA and DPO + QLoRA (tests), including resume after a hard kill (bit-identical);
    the ml-stack notes also ran SFT + QLoRA and DPO + LoRA.
  * ZeRO-3: SFT + LoRA and DPO + QLoRA, including resume after a hard kill (bit-identical).
  * ZeRO-3 shards parameters, so every parameter must share one dtype. QLoRA + ZeRO-3 therefore
    needs `bnb_4bit_quant_storage` equal to the dtype of the rest of the model (bf16 on GPU, fp32
    on CPU) — see `quant_storage_dtype` — and no `device_map` at load time ("DeepSpeed Zero-3 is not
    compatible with passing a device_map"). We also skip `prepare_model_for_kbit_training` there:
    it upcasts norms and embeddings to fp32, which breaks the uniform dtype.
  * ZeRO-3 + PEFT + gradient checkpointing: TRL forces reentrant checkpointing (it warns).
  * ZeRO-3 on CPU with several processes needs the pre-built gloo PartialState (jobs.train.distributed);
    the simpler `use_cpu=True, ddp_backend="gloo"` route fails in zero.Init ("8 != 4 * 1 * 1").
  * Liger kernels need Triton and a GPU: never on CPU (the job turns `liger: auto` off there).
  * Paged optimizers (paged_adamw_32bit) need CUDA; with ZeRO they run as a client optimizer, hence
    `zero_allow_untested_optimizer` (GPU-only, not exercised here).
"""

from __future__ import annotations

from typing import Any

from jobs.errors import JobFailure

STAGES = (0, 1, 2, 3)


def zero_config(stage: int, *, bf16: bool) -> dict[str, Any] | None:
    """The DeepSpeed config dict for ZeRO `stage`, or None for stage 0 (plain DDP / one process)."""
    if stage not in STAGES:
        raise JobFailure(f"training.deepspeed_stage: {stage!r} is not one of 0, 2, 3")
    if stage == 0:
        return None
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": False, "contiguous_gradients": True}
    if stage == 3:
        # The final adapter is saved from gathered 16-bit weights (PEFT keeps only the adapter's).
        zero.update({"stage3_gather_16bit_weights_on_model_save": True,
                     "stage3_param_persistence_threshold": "auto", "stage3_prefetch_bucket_size": "auto"})
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": False},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        # bitsandbytes' paged AdamW is a client optimizer DeepSpeed has not certified.
        "zero_allow_untested_optimizer": True,
        "wall_clock_breakdown": False,
    }


def quant_storage_dtype(stage: int, configured: str, model_dtype: str) -> str:
    """The storage dtype of the packed 4-bit weights. ZeRO-3 shards every parameter with one
    dtype, so there it must equal the dtype of the model's other weights; elsewhere the spec's
    value is used as is (it changes nothing numerically)."""
    return model_dtype if stage == 3 else configured
