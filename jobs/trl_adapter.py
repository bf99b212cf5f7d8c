"""The one place that knows TRL's (1.16) argument and metric names.

TRL renames and removes arguments between minor versions (DPOConfig lost `max_prompt_length`, whose
truncation jobs.data.examples now applies;
`warmup_ratio` became a fractional `warmup_steps` in transformers 5). The training recipe speaks in
the resolved config's terms; this module maps them onto SFTConfig/DPOConfig and SFTTrainer/
DPOTrainer, and maps TRL's logged metric names back onto ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

# TRL log key -> the name train_metrics.json uses.
METRIC_NAMES = {
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "mean_token_accuracy": "token_accuracy",
    "rewards/accuracies": "reward_accuracy",
    "rewards/margins": "reward_margin",
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
}


@dataclass
class Runtime:
    """What the job decided at run time (device, world size), beside the config's values."""

    output_dir: str
    grad_accum: int
    optimizer: str
    bf16: bool
    deepspeed: dict | None
    liger: bool
    ddp_backend: str | None
    extra: dict[str, Any] = field(default_factory=dict)  # from jobs.distributed.setup
    tracking: dict[str, Any] = field(default_factory=dict)  # report_to, run_name: from jobs.tracking.setup


def make_args(kind: str, method: dict, training: dict, seed: int, rt: Runtime) -> SFTConfig | DPOConfig:
    common: dict[str, Any] = dict(
        output_dir=rt.output_dir,
        max_steps=int(training["max_steps"]),
        per_device_train_batch_size=int(method["per_device_batch_size"]),
        gradient_accumulation_steps=rt.grad_accum,
        learning_rate=float(method["learning_rate"]),
        lr_scheduler_type=method["lr_scheduler"],
        warmup_steps=float(method["warmup_ratio"]),  # a float < 1 is a ratio of max_steps
        max_grad_norm=float(method["max_grad_norm"]),
        weight_decay=float(method["weight_decay"]),
        optim=rt.optimizer,
        adam_beta1=float(method["adam_beta1"]),
        adam_beta2=float(method["adam_beta2"]),
        max_length=int(method["max_length"]),
        seed=int(seed),
        bf16=rt.bf16,
        fp16=False,  # TRL defaults bf16=True; fp32 unless the job chose bf16 (GPU)
        gradient_checkpointing=bool(training["gradient_checkpointing"]),
        gradient_checkpointing_kwargs={"use_reentrant": False},
        deepspeed=rt.deepspeed,
        ddp_backend=rt.ddp_backend,
        ddp_find_unused_parameters=False,
        use_liger_kernel=rt.liger,
        # Every step is logged: the loss curve is then exact across a preemption (HF averages the
        # loss since the last log, which a resume would cut in two); we window it ourselves.
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN must reach our check, not be papered over
        include_num_input_tokens_seen="non_padding",  # restored from checkpoints, unlike TRL's count
        save_strategy="steps",
        save_steps=int(training["save_steps"]),
        save_total_limit=2,  # resumable states only; adapters are exported to checkpoints/step-N
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        **rt.extra,
    )
    common.update(rt.tracking)  # the spec's tracker replaces report_to="none"
    if kind == "sft":
        return SFTConfig(
            **common,
            packing=bool(training.get("packing", False)),
            packing_strategy="bfd",  # best-fit packing; implies padding-free batches
            # rows come tokenized from jobs.data.examples with a completion_mask over the final
            # response; TRL turns it into labels (-100 elsewhere) when completion_only_loss is on
            assistant_only_loss=False,
            completion_only_loss=bool(method["completion_only_loss"]),
        )
    if kind == "dpo":
        return DPOConfig(
            **common,
            beta=float(method["beta"]),
            loss_type=["sigmoid"],
            precompute_ref_log_probs=bool(training.get("precompute_ref_log_probs", False)),
        )
    raise ValueError(f"unknown method type {kind!r}")


class _DPOTrainer(DPOTrainer):
    """DPOTrainer on rows that jobs.data.examples already tokenized and truncated as TRL 0.8 did
    (prompt cut only when the pair does not fit). TRL 1.16's `_prepare_dataset` would tokenize
    `prompt`/`chosen`/`rejected` again; these rows are already its output (`prompt_ids`,
    `chosen_ids`, `rejected_ids`), and each fits `max_length`, so the collator's own
    keep_start truncation never cuts."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "prompt_ids" in dataset.column_names:
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)


def make_trainer(kind: str, *, model, tokenizer, dataset, peft_config, args, callbacks,
                 fp32_adapters: bool = False):
    if kind == "sft":
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=callbacks)
    else:
        # ref_model=None with a PEFT model: the reference is the base with the adapter disabled, so
        # there is no second copy of the model in memory.
        trainer = _DPOTrainer(model=model, ref_model=None, args=args, train_dataset=dataset,
                              processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    if fp32_adapters:
        # TRL casts QLoRA adapter weights to bf16, but PEFT reloads a checkpoint's adapter in fp32
        # (autocast_adapter_dtype), so a resumed run would train in another precision than an
        # uninterrupted one. Keep fp32 from the start (PEFT's own default; the optimizer is built
        # later, in train()). Not under ZeRO-3, which needs one dtype for all parameters.
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    return trainer


def rows_of_history(log_history: list[dict]) -> list[dict]:
    """Per-step training log entries from `trainer.state.log_history`, in our names."""
    rows = []
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue  # the final summary ("train_loss", "train_runtime") and eval entries
        row = {"step": int(entry["step"])}
        for trl_name, ours in METRIC_NAMES.items():
            if trl_name in entry and entry[trl_name] is not None:
                row[ours] = float(entry[trl_name])
        if "num_input_tokens_seen" in entry:
            row["tokens_seen"] = int(entry["num_input_tokens_seen"])
        rows.append(row)
    return rows
