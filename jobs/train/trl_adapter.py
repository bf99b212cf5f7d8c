"""The TRL (1.16) arguments every method shares, and TRL's logged metric names mapped onto ours.

TRL renames and removes arguments between minor versions (DPOConfig lost `max_prompt_length`, whose
truncation jobs.data.examples now applies; `warmup_ratio` became a fractional `warmup_steps` in
transformers 5). The training recipe speaks in the typed config's terms (alignkit.contract.train);
`common_args` maps them onto TrainingArguments, and each method (alignkit/plugins/methods/) adds its own
arguments, TRL config class and trainer. Validation (`dataset.validation`) turns on TRL's evaluation
every `eval_steps`; its log entries are TRL's with an "eval_" prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alignkit.contract.train import TrainConfig

# TRL log key -> the name train_metrics.json uses, for every method (each adds its own: Method.metrics)
COMMON_METRICS = {"loss": "loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}
EVAL_PREFIX = "eval_"  # transformers' metric_key_prefix for evaluation


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
    extra: dict[str, Any] = field(default_factory=dict)  # from jobs.train.distributed.setup
    tracking: dict[str, Any] = field(default_factory=dict)  # report_to, run_name: from jobs.tracking.setup


def common_args(config: TrainConfig, rt: Runtime) -> dict[str, Any]:
    """TrainingArguments keywords from the config's common fields and training section."""
    m, t = config.method, config.training
    common: dict[str, Any] = dict(
        output_dir=rt.output_dir,
        max_steps=t.max_steps,
        per_device_train_batch_size=m.per_device_batch_size,
        gradient_accumulation_steps=rt.grad_accum,
        learning_rate=m.learning_rate,
        lr_scheduler_type=m.lr_scheduler,
        warmup_steps=float(m.warmup_ratio),  # a float < 1 is a ratio of max_steps
        max_grad_norm=m.max_grad_norm,
        weight_decay=m.weight_decay,
        optim=rt.optimizer,
        adam_beta1=m.adam_beta1,
        adam_beta2=m.adam_beta2,
        max_length=m.max_length,
        seed=config.seed,
        bf16=rt.bf16,
        fp16=False,  # TRL defaults bf16=True; fp32 unless the job chose bf16 (GPU)
        gradient_checkpointing=t.gradient_checkpointing,
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
        save_steps=t.save_steps,
        save_total_limit=2,  # resumable states only; adapters are exported to checkpoints/step-N
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        **rt.extra,
    )
    if config.eval_steps is not None:
        # validation: the held-out examples every eval_steps, and at the last step (transformers 5's
        # DefaultFlowCallback.on_step_end evaluates there too when it is not a multiple)
        common.update(eval_strategy="steps", eval_steps=config.eval_steps,
                      per_device_eval_batch_size=m.per_device_batch_size)
    common.update(rt.tracking)  # the spec's tracker replaces report_to="none"
    return common


def make_args(method: Any, config: TrainConfig, rt: Runtime) -> Any:
    """The method's TRL *Config for this run."""
    return method.trl_args(config.method, common_args(config, rt), training=config.training)


def make_trainer(method: Any, config: TrainConfig, *, model, tokenizer, dataset, eval_dataset=None, peft_config,
                 args, callbacks, fp32_adapters: bool = False):
    trainer = method.trainer(config.method, model=model, tokenizer=tokenizer, train_dataset=dataset,
                             eval_dataset=eval_dataset, peft_config=peft_config, args=args, callbacks=callbacks)
    if fp32_adapters:
        # TRL casts QLoRA adapter weights to bf16, but PEFT reloads a checkpoint's adapter in fp32
        # (autocast_adapter_dtype), so a resumed run would train in another precision than an
        # uninterrupted one. Keep fp32 from the start (PEFT's own default; the optimizer is built
        # later, in train()). Not under ZeRO-3, which needs one dtype for all parameters.
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    return trainer


def metric_names(method: Any) -> dict[str, str]:
    return {**COMMON_METRICS, **method.metrics}


def rows_of_history(log_history: list[dict], names: dict[str, str]) -> list[dict]:
    """Per-step training log entries from `trainer.state.log_history`, in our names."""
    rows = []
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue  # the final summary ("train_loss", "train_runtime") and eval entries
        row = {"step": int(entry["step"])}
        for trl_name, ours in names.items():
            if trl_name in entry and entry[trl_name] is not None:
                row[ours] = float(entry[trl_name])
        if "num_input_tokens_seen" in entry:
            row["tokens_seen"] = int(entry["num_input_tokens_seen"])
        rows.append(row)
    return rows


def validation_of_history(log_history: list[dict], names: dict[str, str]) -> list[dict]:
    """The validation points (TRL's eval_* entries) in step order, in our names: {"step", "loss", ...}."""
    by_step: dict[int, dict] = {}
    for entry in log_history:
        if EVAL_PREFIX + "loss" not in entry or "step" not in entry:
            continue
        point: dict[str, Any] = {"step": int(entry["step"])}
        for trl_name, ours in names.items():
            value = entry.get(EVAL_PREFIX + trl_name)
            if value is not None and ours not in ("learning_rate", "grad_norm"):
                point[ours] = float(value)
        by_step[point["step"]] = point  # one point per step (the last logged)
    return [by_step[s] for s in sorted(by_step)]
