"""The training stage, top to bottom: config -> data -> tokenizer/template -> model (LoRA or
QLoRA) -> TRL trainer -> train with checkpoints -> save.

`run(job_dir, config, stop)` is called by jobs.entry in every process of the job (one per GPU,
or per CPU rank in tests). The config is the typed "train" config (alignkit.contract.train,
docs/contract.md); the method (alignkit/plugins/methods/, looked up by `method.type`) decides the rows,
examples, TRL arguments, trainer and metric names; the hyperparameters are used exactly as given. Where the machine cannot honour one (no CUDA for a
paged optimizer or bf16), the job uses the nearest thing and records the substitution in
train_metrics.json. What the job writes is described in docs/training.md.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alignkit.contract import paths
from alignkit.contract import expect
from alignkit.contract.train import ModelConfig, TrainConfig
from alignkit.contract.checkpoints import epoch_fraction_step
from alignkit.contract.fsio import atomic_write_json
from alignkit.plugins.methods import METHODS
from alignkit.contract.methods import LoraFields, Method
from alignkit.contract.sections import QuantSpec
from jobs.train import chain, checkpoints, distributed
from jobs.train.deepspeed_config import quant_storage_dtype, zero_config
from jobs.errors import JobFailure, Preempted

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "deepspeed",
            "liger-kernel")
# Optimizers that exist only with CUDA (bitsandbytes' paged and 8-bit states).
CUDA_ONLY_OPTIMIZERS = ("paged_", "8bit", "bnb")


@dataclass
class Plan:
    """The config's values turned into run-time choices, plus what had to be substituted."""

    method: Method  # the registered method of config.method.type
    grad_accum: int
    optimizer: str
    model_dtype: str
    bf16: bool
    liger: bool
    quantization: QuantSpec | None  # as used here (compute/storage dtypes after substitutions)
    substitutions: list[dict] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.method.name


def _substitute(plan_subs: list[dict], key: str, configured: Any, used: Any, reason: str) -> Any:
    plan_subs.append({"key": key, "configured": configured, "used": used, "reason": reason})
    return used


def resolve(config: TrainConfig, *, cuda: bool, world_size: int) -> Plan:
    """Check the config and decide what this machine runs; no heavy imports, unit-testable.
    Every default is the spec's (alignkit/contract/sections.py, alignkit/plugins/methods/): none is restated here."""
    expect(config, TrainConfig, "jobs.train.stage.resolve")
    method, training, quant = config.method, config.training, config.peft.quantization
    subs: list[dict] = []

    # Global batch = per-device batch x accumulation x world size, exactly.
    per_step = method.per_device_batch_size * world_size
    if method.batch_size % per_step:
        raise JobFailure(f"method.batch_size {method.batch_size} is not a multiple of per_device_batch_size "
                         f"{method.per_device_batch_size} x world size {world_size}")
    grad_accum = method.batch_size // per_step

    optimizer = method.optimizer
    if not cuda and any(tag in optimizer for tag in CUDA_ONLY_OPTIMIZERS):
        optimizer = _substitute(subs, "method.optimizer", optimizer, "adamw_torch",
                                "bitsandbytes paged/8-bit optimizers need CUDA")

    def dtype_here(key: str, value: str) -> str:
        if value in ("bfloat16", "float16") and not cuda:
            return _substitute(subs, key, value, "float32", "half-precision training on CPU is slow and "
                               "unsupported by the trainer here; float32 instead")
        if value == "float16":
            raise JobFailure(f"{key}: float16 training is not supported (use bfloat16)")
        return value

    model_dtype = dtype_here("model.dtype", config.model.dtype)
    if quant is not None:
        compute = dtype_here("peft.quantization.compute_dtype", quant.compute_dtype)
        storage = dtype_here("peft.quantization.storage_dtype", quant.storage_dtype)  # uint8 stays
        if quant_storage_dtype(training.deepspeed_stage, storage, model_dtype) != storage:
            storage = _substitute(subs, "peft.quantization.storage_dtype", storage, model_dtype,
                                  "ZeRO-3 shards all parameters with one dtype: 4-bit storage = model dtype")
        quant = replace(quant, compute_dtype=compute, storage_dtype=storage)

    impl = METHODS.get(method.type)()
    liger_ok = cuda and _importable("liger_kernel")
    if training.liger == "on" and not liger_ok:
        raise JobFailure("training.liger: 'on' needs a GPU and the liger-kernel package (use 'auto' or 'off')")
    if training.packing and not impl.packs:
        _substitute(subs, "training.packing", True, False, f"TRL's trainer for {impl.name} does not pack")
    bf16 = cuda and "bfloat16" in (model_dtype, quant.compute_dtype if quant else None)
    return Plan(method=impl, grad_accum=grad_accum, optimizer=optimizer, model_dtype=model_dtype, bf16=bf16,
                liger=training.liger != "off" and liger_ok, quantization=quant, substitutions=subs)


def shared_reference(job_dir: Path, config: TrainConfig, plan: Plan, world_size: int) -> Any:
    """The study's reference pass this run reads (jobs/train/reference.py), or None: the run computes its
    reference inline (not DPO, chained, DeepSpeed, several ranks, or a job outside a sweep)."""
    from alignkit.contract.reference import pass_key

    if job_dir.parent.name != paths.JOBS or not (job_dir / paths.CONFIG).is_file():
        return None
    quant = dataclasses.asdict(plan.quantization) if plan.quantization is not None else None
    key = pass_key(config, world_size, model_dtype=plan.model_dtype, quantization=quant)
    if key is None:
        return None
    from jobs.train.reference import SharedReference

    return SharedReference(job_dir, key)


def epoch_steps(training: Any, method: Any, rows: int) -> int:
    """training.num_train_epochs as optimizer steps (alignkit/contract/sections.py steps_for_epochs, the
    count transformers makes); TRL then trains max_steps, so checkpoints, progress and resume stay in steps."""
    from alignkit.contract.sections import steps_for_epochs

    if rows <= 0:
        raise JobFailure("training.num_train_epochs: no training rows are left after filtering")
    return steps_for_epochs(rows, method.batch_size, training.num_train_epochs)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def run(job_dir: Path, config: TrainConfig, stop: threading.Event) -> None:
    import torch

    job_dir = Path(job_dir)
    started = time.time()
    expect(config, TrainConfig, "jobs.train.stage.run")
    method, training = config.method, config.training

    # 1. Where we run. The distributed variables and the CPU process group must exist before the
    #    trainer arguments, and those before the model (ZeRO-3 shards it while loading).
    cuda = torch.cuda.is_available()
    dist = distributed.read_env()
    stage = training.deepspeed_stage
    extra = distributed.setup(dist, cuda=cuda, deepspeed=stage > 0)
    plan = resolve(config, cuda=cuda, world_size=dist.world_size)
    clean_exit = False
    try:
        # 2. Resume from the newest complete checkpoint, if a previous attempt left one.
        resume = checkpoints.latest_complete(job_dir)
        if dist.is_main:
            checkpoints.drop_partial(job_dir)
        distributed.barrier()

        # 3. Trainer arguments, in the config's terms (jobs.train.trl_adapter and the method map them onto TRL's).
        from jobs import tracking
        from jobs.train import trl_adapter

        track = tracking.setup(job_dir, config, is_main=dist.is_main)  # the spec's tracker, if any
        args = trl_adapter.make_args(plan.method, config, trl_adapter.Runtime(
            output_dir=str(checkpoints.resume_dir(job_dir)), grad_accum=plan.grad_accum,
            optimizer=plan.optimizer, bf16=plan.bf16, deepspeed=zero_config(stage, bf16=plan.bf16),
            liger=plan.liger, ddp_backend="gloo" if dist.multi_process and not cuda else None, extra=extra,
            tracking=track.args))
        # The study's shared reference pass (jobs/train/reference.py) for a DPO run that can share one:
        # TRL then reads ref_chosen_logps/ref_rejected_logps from the examples.
        shared = shared_reference(job_dir, config, plan, dist.world_size)
        if shared is not None:
            args.precompute_ref_log_probs = True

        # 4-5. Data, tokenizer and template: normalized preference pairs turned into the tokenized,
        #      truncated, masked examples the trainer gets (SFT: loss on the chosen response only), and
        #      the held-out validation examples built the same way. `alignkit preview` shows these.
        data = load_examples(config, plan.method)
        tokenizer = data.tokenizer
        if dist.is_main:
            print(f"data: {data.report.summary()}", flush=True)
        fraction_steps: dict[str, int] = {}
        if training.num_train_epochs is not None:  # the steps of the rows kept after filtering
            args.max_steps = epoch_steps(training, method, len(data.dataset))
            fraction_steps = {str(f): epoch_fraction_step(f, args.max_steps) for f in config.save_fractions or ()}
            if dist.is_main:
                print(f"training: {training.num_train_epochs:g} epochs over {len(data.dataset)} rows at global "
                      f"batch {method.batch_size} = {args.max_steps} steps", flush=True)

        # 6. Base model (4-bit NF4 for QLoRA) and the LoRA config; TRL wraps it in PEFT. A chained
        #    run (config.init, jobs/train/chain.py) starts from its upstream's result instead: merged into
        #    the base under a fresh adapter, or its adapter trained on (no new one).
        model_cfg, chained = config.model, config.init is not None
        if chained and config.init.mode == "merge":
            source = chain.merged_base(job_dir, config, plan.model_dtype, dist.is_main)
            distributed.barrier()
            model_cfg = replace(model_cfg, source=str(source))
        model = load_model(model_cfg, plan, stage, device=args.device)
        lora = lora_config(method.lora)
        if chained and config.init.mode == "continue":
            model, lora = chain.continue_adapter(model, job_dir, config), None

        # 7. The TRL trainer with our callbacks: progress + stop requests + NaN, checkpoints.
        from jobs.progress import ProgressCallback

        progress = ProgressCallback(job_dir, stop, every=training.logging_steps, is_main=dist.is_main)
        saver = checkpoints.CheckpointCallback(job_dir, training.save_steps, dist.is_main,
                                               prior=checkpoints.run_state(resume),
                                               also_at=frozenset(fraction_steps.values()))
        from jobs.train.paged_optim import RepageOnResume  # a resumed paged optimizer stays paged (docs/gpu.md)

        start = chain.adapter_values(model) if chained and config.init.mode == "continue" else None
        from jobs.train import reference

        with reference.active(shared):
            trainer = trl_adapter.make_trainer(
                plan.method, config, model=model, tokenizer=tokenizer, dataset=data.dataset,
                eval_dataset=data.validation, peft_config=lora, args=args,
                callbacks=[progress, saver, RepageOnResume(), *track.callbacks],
                fp32_adapters=plan.quantization is not None and stage != 3)
        if start is not None:
            chain.check_reference(trainer.model, plan.method)
            if plan.quantization is not None and stage != 3:
                chain.exact_start(trainer.model, start)

        # 8. Train (from the resume point, with the same data order: the Trainer skips the batches
        #    it already consumed and restores the RNG states).
        train_started = time.time()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        if progress.stopped_at is not None:
            clean_exit = True
            raise Preempted(f"stop requested: checkpoint saved at step {progress.stopped_at}")

        # 9. Save: the final adapter, the metrics, then drop the optimizer states.
        step = trainer.state.global_step
        if dist.is_main:
            checkpoints.export_adapter(checkpoints.resume_dir(job_dir) / f"checkpoint-{step}",
                                       job_dir / paths.ADAPTER)
            atomic_write_json(job_dir / paths.TRAIN_METRICS, metrics(
                job_dir, config, plan, trainer, data.report, dist.world_size, stage, saver.wall_s(), saver.attempts,
                train_wall_s=time.time() - train_started, setup_s=train_started - started,
                tokens_at_start=progress.tokens_at_start, step_at_start=progress.step_at_start,
                shared=shared, fraction_steps=fraction_steps))
        distributed.barrier()
        if dist.is_main:
            checkpoints.finish(job_dir)
        clean_exit = True
    except torch.cuda.OutOfMemoryError as exc:
        raise JobFailure(f"CUDA out of memory (per_device_batch_size {method.per_device_batch_size}, "
                         f"max_length {method.max_length}, gradient_checkpointing "
                         f"{training.gradient_checkpointing}): lower the batch or length, or turn on "
                         f"gradient checkpointing") from exc
    finally:
        distributed.teardown(clean=clean_exit)


@dataclass
class Examples:
    """What the trainer trains on, and how it came about (read by `alignkit preview` too)."""

    dataset: Any  # trainer-ready, the method's columns (Method.columns)
    rows: Any  # the method's rows before tokenizing (SFT: prompt/completion; DPO: prompt/chosen/rejected)
    kept: list[int]  # for each example, its index in `rows`
    tokenizer: Any
    report: Any  # jobs.data.DropReport, including the rows dropped while building examples
    validation: Any = None  # held-out examples built the same way (dataset.validation), or None


def load_examples(config: TrainConfig, method: Method | None = None) -> Examples:
    from alignkit.plugins import formats
    from jobs.data import load_with_validation

    expect(config, TrainConfig, "jobs.train.stage.load_examples")
    method = method or METHODS.get(config.method.type)()
    prefs = load_with_validation(config.dataset, list(config.preference), config.seed)
    refused = formats.refusal(type(method), formats.rows_type(prefs.train.column_names))
    if refused:  # plan refuses it first (alignkit/plan/datacheck.py) where it can read the data
        raise JobFailure(f"dataset {config.dataset.name}: {refused}")
    rows, report = method.rows(prefs.train), prefs.report
    name = config.dataset.name
    if len(rows) == 0:
        raise JobFailure(f"dataset {name}: zero rows after filtering (preference {list(config.preference)})")
    tokenizer = load_tokenizer(config.model)
    dataset, dropped, kept = method.examples(rows, tokenizer, config.method)
    report.examples_dropped, report.trained = dropped, len(dataset)
    if len(dataset) == 0:
        raise JobFailure(f"dataset {name}: no rows left after tokenizing and "
                         f"truncating to max_length {config.method.max_length} ({report.summary()})")
    validation = None
    if prefs.validation is not None:
        validation, vdropped, _ = method.examples(method.rows(prefs.validation), tokenizer, config.method)
        report.validation = {"rows": len(prefs.validation), "examples": len(validation), "dropped": dict(vdropped)}
        if len(validation) == 0:
            raise JobFailure(f"dataset {name}: no validation examples left after tokenizing and truncating "
                             f"to max_length {config.method.max_length}")
    return Examples(dataset=dataset, rows=rows, kept=kept, tokenizer=tokenizer, report=report,
                    validation=validation)


def load_tokenizer(model_cfg: ModelConfig):
    from transformers import AutoTokenizer

    from jobs.data.templates import apply_template

    expect(model_cfg, ModelConfig, "jobs.train.stage.load_tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_cfg.source, revision=model_cfg.revision)
    except Exception as exc:
        raise JobFailure(f"model {model_cfg.name}: cannot load the tokenizer from {model_cfg.source}: "
                         f"{_first_line(exc)}") from exc
    apply_template(tokenizer, model_cfg)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_cfg: ModelConfig, plan: Plan, stage: int, device):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"revision": model_cfg.revision, "dtype": getattr(torch, plan.model_dtype)}
    q = plan.quantization
    if q is not None:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=q.quant_type, bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
            bnb_4bit_quant_storage=getattr(torch, q.storage_dtype))
        if stage != 3:  # ZeRO-3 places (shards) the weights itself and refuses a device_map
            kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_cfg.source, **kwargs)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        raise JobFailure(f"model {model_cfg.name}: cannot load {model_cfg.source} "
                         f"(revision {model_cfg.revision}): {_first_line(exc)}") from exc
    model.config.use_cache = False  # no KV cache while training (and it conflicts with checkpointing)
    if q is not None:
        import bitsandbytes as bnb

        if device.type == "cpu":
            # bitsandbytes on AVX512-BF16 CPUs repacks 4-bit weights for an inference kernel on the
            # first eval-mode forward; backward through them is then silently wrong. Must precede
            # any forward (ml-stack README, gotcha 2).
            for mod in model.modules():
                if isinstance(mod, bnb.nn.Linear4bit):
                    mod.support_avx512bf16_for_cpu = False
        if stage != 3:  # it upcasts norms/embeddings to fp32, which ZeRO-3's one-dtype sharding refuses
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model


def lora_config(lora: LoraFields):
    from peft import LoraConfig

    from alignkit.contract.methods import peft_target_modules

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=peft_target_modules(lora.target_modules), bias="none", task_type="CAUSAL_LM")


def _first_line(exc: BaseException) -> str:
    lines = [s for s in str(exc).strip().splitlines() if s.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


# ---- what train_metrics.json holds (fields documented in docs/training.md) ----

def loss_curve(rows: list[dict], every: int) -> list[dict]:
    """Per-step log rows averaged over windows of `every` steps ending at multiples of `every`
    (and the last step), like HF's own logging but independent of where a run was interrupted."""
    curve, window = [], []
    for i, row in enumerate(rows):
        window.append(row)
        if row["step"] % every == 0 or i == len(rows) - 1:
            point: dict[str, Any] = {"step": row["step"]}
            for key in row:
                if key in ("step", "tokens_seen", "learning_rate"):
                    continue
                vals = [r[key] for r in window if key in r]
                point[key] = sum(vals) / len(vals)
            point["learning_rate"] = row.get("learning_rate")
            curve.append(point)
            window = []
    return curve


def validation(points: list[dict]) -> dict | None:
    """train_metrics.json's "validation": every evaluation of the held-out examples, and the last."""
    if not points:
        return None
    return {"curve": points, "final": points[-1]}


def metrics(job_dir: Path, config: TrainConfig, plan: Plan, trainer, report, world_size: int, stage: int,
            wall_s: float, attempts: int, *, train_wall_s: float, setup_s: float, tokens_at_start: int,
            step_at_start: int, shared: Any = None, fraction_steps: dict[str, int] | None = None) -> dict:
    import torch

    from jobs.train import trl_adapter

    method, training = config.method, config.training
    names = trl_adapter.metric_names(plan.method)
    rows = trl_adapter.rows_of_history(trainer.state.log_history, names)
    curve = loss_curve(rows, max(1, training.logging_steps))
    steps_here = trainer.state.global_step - step_at_start
    tokens_here = trainer.state.num_input_tokens_seen - tokens_at_start
    last = curve[-1] if curve else {}
    cuda = torch.cuda.is_available()
    out = {
        "method": plan.kind,
        "peft": config.peft.name,
        "steps": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,  # training.max_steps, or the steps num_train_epochs came to
        "num_train_epochs": training.num_train_epochs,
        "fraction_steps": fraction_steps or {},  # num_train_epochs: each evals fraction of training -> its step
        "loss_curve": curve,
        "first_loss": curve[0]["loss"] if curve else None,
        "final_loss": last.get("loss"),
        "dpo": None,  # DPO's reward block; null for other methods (train_metrics.json's documented shape)
        **plan.method.summary(curve),  # the method's own blocks (DPO: "dpo", reward accuracy and margin)
        "checkpoints": checkpoints.saved_steps(job_dir),
        "train_rows": len(trainer.train_dataset),
        "data": report.as_dict(),
        "global_batch_size": method.batch_size,
        "per_device_batch_size": method.per_device_batch_size,
        "grad_accum": plan.grad_accum,
        "world_size": world_size,
        "deepspeed_stage": stage,
        "engine": type(trainer.model_wrapped).__name__,  # DeepSpeedEngine, DistributedDataParallel, PeftModel...
        "optimizer": plan.optimizer,
        "precision": "bf16" if plan.bf16 else "fp32",
        "substitutions": plan.substitutions,
        "liger": plan.liger,
        "tokens_seen": trainer.state.num_input_tokens_seen,
        # Throughput of this attempt's steps (a resumed run measures only what it ran).
        "tokens_per_s": tokens_here / train_wall_s if train_wall_s > 0 else None,
        "samples_per_s": steps_here * method.batch_size / train_wall_s if train_wall_s > 0 else None,
        "train_wall_s": train_wall_s,
        "setup_s": setup_s,
        "wall_s": wall_s,
        "attempts": attempts,
        "resumed_from_step": step_at_start,  # 0 unless this attempt resumed from a checkpoint
        "peak_memory_bytes": (torch.cuda.max_memory_allocated() if cuda
                              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
        "peak_memory_kind": "cuda_max_allocated" if cuda else "cpu_max_rss",
        "device": "cuda" if cuda else "cpu",
        "gpu_type": torch.cuda.get_device_name(0) if cuda else None,
        "packages": _versions(),
        "code_commit": code_commit(job_dir),
    }
    out["reference"] = out["reference_pass"] = None  # like "dpo": a documented key, null without a reference model
    if plan.method.reference_model:  # DPO-family: where the reference log-probs came from
        rec = shared.record() if shared is not None else None
        # computed | reused: the study's shared pass (this run computed part of it, or read it);
        # own_pass: TRL's per-run precompute; inline: the reference forward in every step
        out["reference"] = rec["status"] if rec else ("own_pass" if training.precompute_ref_log_probs else "inline")
        out["reference_pass"] = rec
    if config.eval_steps is not None:  # only runs with validation carry the key
        out["validation"] = validation(trl_adapter.validation_of_history(trainer.state.log_history, names))
    return out


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_commit(job_dir: Path) -> str | None:
    """The commit of the code snapshot the job ran: <sweep>/code/COMMIT, else git, else None."""
    snap = Path(job_dir).parent.parent / paths.CODE / "COMMIT"
    if snap.is_file():
        return snap.read_text().strip() or None
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
