"""QLoRA SFT and QLoRA DPO throughput and peak memory on a 7B-shaped Llama: alignkit's defaults
against TRL's defaults, same model, data, batch and steps, each run in a fresh process.

    python bench/gpu_qlora.py [--steps 20] [--warmup 2] [--kinds sft,dpo] [--out /tmp/ak-gpu-bench]
                              [--variants trl,alignkit,alignkit:liger=off,trl:liger=on] [--deadline S]
    python bench/gpu_qlora.py --tiny                                                     # CPU check

The model is built from a Llama-2-7B config with random weights (no download) and saved once
under --out (13.5 GB in bf16); the tokenizer is the tiny model's (its ids fit the 32000 vocab).
The data are synthetic preference pairs of HH-RLHF-like lengths (prompt ~120 tokens, responses
~150), written as a normalized JSONL file.

alignkit side: the train config sweeps/full.yaml compiles for QLoRA SFT / DPO (per-device 4 x
accumulation 4, max_length 512, gradient checkpointing, paged AdamW, liger auto, ...), pointed at
this model and data, run by the real job (`jobs.entry`). TRL side: the script a user would write,
TRL's SFTConfig/DPOConfig defaults except what must match for a fair comparison (batch,
accumulation, max_length, steps, learning rate, LoRA config, the same 4-bit NF4 base).
Reported per run: non-padding tokens/s and samples/s over the steps after --warmup (a callback
added to the trainer times each optimizer step, after a CUDA sync; the token count is the
Trainer's non-padding count, turned on for the TRL side too), over the whole loop as well, and
torch.cuda.max_memory_allocated(); then the ratios of each variant to TRL's defaults.

Like for like (issue 20 item 2): the TRL side uses the job's data, lengths, optimizer, schedule,
clipping, weight decay, gradient checkpointing and checkpoint saving, so `alignkit` / `trl` is the
job's own overhead. Then each lever alone, applied to the job (`alignkit:<lever>`), one row each,
with its ratio to TRL's defaults and to the job, and whether it is exact: its per-step losses
against the job's on the same batches (`loss_max_rel_diff`; a lever that reorders the samples
cannot be compared step by step and says so). The levers (LEVERS): `group_by_length=true`
(TrainingArguments.train_sampling_strategy="group_by_length"), `liger=on` (per method: Liger's
fused loss for that method's trainer), `gradient_checkpointing=false`, `gc_reentrant=true`
(reentrant checkpointing instead of the job's non-reentrant), `torch_compile=true`. Those the
config has (liger, gradient_checkpointing, packing) go into the job's config; the others are
TrainingArguments the worker adds to what jobs.train.trl_adapter.common_args returns. A lever becomes a
default only when it is exact and faster on a GPU (docs/gpu.md); on CPU the rows are mechanics.

Other variants: `trl:liger=on`, `alignkit:packing=true` / `trl:padding_free=true` (SFT; need a
FlashAttention implementation, which the GPU machine lacks). A variant that cannot run here is
recorded as skipped with the reason. Runs go base pairs first, levers after, and stop starting new
ones when --deadline seconds are nearly spent. `--layers N` builds the 7B widths with N of its 32
layers (the check uses 8 to fit its budget: per-layer work is that of a 7B, the absolute tokens/s
are not). `--in-process` runs the workers in this process (the suite's fast rehearsal).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "assets" / "tiny-llama"
LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
                tie_word_embeddings=False)
WORDS = ("the a of to and in is it you that he was for on are with as his they be at one have this from "
         "or had by word but what some we can out other were all there when up use your how said an each "
         "she which do their time if will way about many then them write would like so these her long make "
         "thing see him two has look more day could go come did number sound no most people my over know "
         "water than call first who may down side been now find any new work part take get place made").split()


# The levers of item 2, each a row against the job (see the docstring); the check runs them all.
LEVERS = ("group_by_length=true", "liger=on", "gradient_checkpointing=false", "gc_reentrant=true",
          "torch_compile=true")
CONFIG_OPTIONS = ("liger", "gradient_checkpointing", "packing")  # fields of the job's training section
# lever -> the TrainingArguments it sets on top of the job's (jobs.train.trl_adapter.common_args)
ARG_OPTIONS = {"group_by_length": {"train_sampling_strategy": "group_by_length"},
               "gc_reentrant": {"gradient_checkpointing_kwargs": {"use_reentrant": True}},
               "torch_compile": {"torch_compile": True}}
REORDERS = ("group_by_length",)  # levers that change which samples form a batch


def build_model(out: Path, tiny: bool, layers: int = 32) -> Path:
    """A 7B-shaped Llama with random weights (or the tiny model for --tiny), saved in HF format."""
    if tiny:
        return TINY
    target = out / ("llama-7b-random" if layers == 32 else f"llama-7b-random-{layers}l")
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(TINY)
    cfg = LlamaConfig(**{**LLAMA_7B, "num_hidden_layers": layers}, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init on the GPU: seconds
        model = LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16)  # 13.5 GB, never fp32
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".llama-7b."))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, target)
    del model
    return target


def build_data(out: Path, rows: int) -> Path:
    rng = random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."

    path = out / "pairs.jsonl"
    with open(path, "w") as f:
        for _ in range(rows):
            f.write(json.dumps({"prompt": text(rng.randint(40, 80)), "chosen": text(rng.randint(50, 100)),
                                "rejected": text(rng.randint(50, 100))}) + "\n")
    return path


def alignkit_config(kind: str, model: Path, data: Path, steps: int, tiny: bool) -> dict:
    from alignkit.contract.serial import to_json
    from alignkit.plan.compiler import load_plan

    plan = load_plan(ROOT / "sweeps" / "full.yaml", output_dir=Path(tempfile.gettempdir()) / "ak-bench-plan")
    job = next(j for j in plan.jobs if j.stage == "train" and j.config.axes["method"] == kind
               and j.config.axes["peft"] == "qlora")
    cfg = to_json(job.config)  # as config.json holds it
    cfg["model"].update(name="llama-7b-random", source=str(model), template="chat_template", dtype="bfloat16")
    cfg["dataset"] = {"name": "synthetic", "format": "normalized", "source": str(data), "revision": "main",
                      "split": "train", "subsets": None, "limit": None}
    cfg["preference"] = ["helpful"]
    cfg["training"].update(max_steps=steps, save_steps=steps, logging_steps=1)
    if tiny:  # the same code path at CPU scale
        cfg["method"].update(per_device_batch_size=2, batch_size=4, max_length=96)
        if "max_prompt_length" in cfg["method"]:  # DPO's field only: the SFT contract refuses it
            cfg["method"]["max_prompt_length"] = 48
    return cfg


def step_timer():
    """A TrainerCallback recording (time, non-padding tokens seen) at each optimizer step's end."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[tuple[float, int]] = []

        def on_train_begin(self, args, state, control, **kw):
            self.marks = [(time.perf_counter(), state.num_input_tokens_seen)]

        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # the step's kernels are done, not just queued
            self.marks.append((time.perf_counter(), state.num_input_tokens_seen))

    return StepTimer()


def timed(marks: list[tuple[float, int]], warmup: int, batch: int) -> dict:
    """Throughput over the steps after `warmup` (and over all steps, for reference)."""
    steps = len(marks) - 1
    w = min(warmup, max(steps - 1, 0))
    (t0, n0), (t1, n1) = marks[w], marks[-1]
    (ta, na) = marks[0]
    return {"steps": steps, "warmup_steps": w, "timed_s": t1 - t0, "tokens_timed": n1 - n0,
            "tokens_per_s": (n1 - n0) / (t1 - t0), "samples_per_s": (steps - w) * batch / (t1 - t0),
            "tokens_per_s_all_steps": (n1 - na) / (t1 - ta), "step_s": [round(b[0] - a[0], 4)
                                                                      for a, b in zip(marks, marks[1:], strict=False)]}


def with_lengths(trainer) -> None:
    """LengthGroupedSampler infers lengths from `input_ids` (SFT has them); DPO's pairs have
    prompt/chosen/rejected ids instead: give it a `length` column (prompt + the longer response,
    what a padded pair costs) and keep that column through the unused-column removal."""
    ds = trainer.train_dataset
    if "input_ids" in ds.column_names or "prompt_ids" not in ds.column_names:
        return
    lengths = [len(p) + max(len(c), len(r)) for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"],
                                                                strict=True)]
    trainer.train_dataset = ds.add_column(trainer.args.length_column_name, lengths)
    trainer._set_signature_columns_if_needed()
    trainer._signature_columns = [*trainer._signature_columns, trainer.args.length_column_name]


def worker_alignkit(cfg_path: str, out: str, warmup: int) -> dict:
    from jobs.train import trl_adapter
    from jobs.entry import run_job

    cfg = json.loads(Path(cfg_path).read_text())
    extra_args = cfg.pop("trainer_args", {})  # a lever's TrainingArguments (ARG_OPTIONS)
    timer = step_timer()
    make, common = trl_adapter.make_trainer, trl_adapter.common_args

    def make_trainer(*args, **kwargs):  # the job's own trainer, plus the timing callback
        trainer = make(*args, **kwargs)
        trainer.add_callback(timer)
        if extra_args.get("train_sampling_strategy") == "group_by_length":
            with_lengths(trainer)
        return trainer

    def common_args(*args, **kwargs):
        return {**common(*args, **kwargs), **extra_args}

    trl_adapter.make_trainer, trl_adapter.common_args = make_trainer, common_args
    job = Path(out)
    job.mkdir(parents=True, exist_ok=True)
    (job / "config.json").write_text(json.dumps(cfg))
    try:
        run_job(job)
    finally:  # --in-process: the next run in this process gets the job's own functions back
        trl_adapter.make_trainer, trl_adapter.common_args = make, common
    m = json.loads((job / "train_metrics.json").read_text())
    return {**timed(timer.marks, warmup, int(cfg["method"]["batch_size"])),
            "peak_memory_bytes": m["peak_memory_bytes"], "train_s": m["train_wall_s"], "tokens": m["tokens_seen"],
            "loop_tokens_per_s": m["tokens_per_s"], "final_loss": m["final_loss"],
            "first_loss": m["first_loss"], "losses": [p["loss"] for p in m["loss_curve"]],
            "settings": {k: m[k] for k in ("optimizer", "precision", "liger", "substitutions")}
            | {"gradient_checkpointing": cfg["training"]["gradient_checkpointing"],
               "packing": cfg["training"].get("packing", False), "trainer_args": extra_args}}


def worker_trl(cfg_path: str, out: str, warmup: int) -> dict:
    """TRL defaults: what a user writes with TRL's docs, matching only the fairness-relevant values."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from jobs.data import load_preferences, sft_rows
    from tests.fixtures.train_configs import typed_dataset

    cfg = json.loads(Path(cfg_path).read_text())
    m, t = cfg["method"], cfg["training"]
    options = cfg.get("trl_options", {})  # a variant's TRL settings (use_liger_kernel, padding_free)
    cuda = torch.cuda.is_available()
    compute = torch.bfloat16 if cuda else torch.float32
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=compute)
    tok = AutoTokenizer.from_pretrained(cfg["model"]["source"])
    model = AutoModelForCausalLM.from_pretrained(cfg["model"]["source"], quantization_config=q, dtype=compute,
                                                 device_map={"": 0 if cuda else "cpu"})
    if not cuda:  # bitsandbytes' AVX512-BF16 repacking bug (ml-stack README, gotcha 2)
        import bitsandbytes as bnb

        for mod in model.modules():
            if isinstance(mod, bnb.nn.Linear4bit):
                mod.support_avx512bf16_for_cpu = False
    lora = LoraConfig(r=m["lora"]["r"], lora_alpha=m["lora"]["alpha"], lora_dropout=m["lora"]["dropout"],
                      target_modules=m["lora"]["target_modules"], task_type="CAUSAL_LM")
    rows = load_preferences(typed_dataset(cfg["dataset"]), cfg["preference"], cfg["seed"])
    common = dict(output_dir=out, max_steps=t["max_steps"], per_device_train_batch_size=m["per_device_batch_size"],
                  gradient_accumulation_steps=m["batch_size"] // m["per_device_batch_size"],
                  learning_rate=m["learning_rate"], max_length=m["max_length"],
                  # the job saves a resumable checkpoint every save_steps: so does this side
                  save_strategy="steps", save_steps=t["save_steps"], save_total_limit=2,
                  # the job's own optimizer and schedule, so the ratio measures alignkit, not a choice
                  # of settings (the first H100 run compared TRL's default fused AdamW with paged AdamW)
                  optim=m["optimizer"] if cuda else "adamw_torch", lr_scheduler_type=m["lr_scheduler"],
                  max_grad_norm=m["max_grad_norm"], weight_decay=m["weight_decay"],
                  gradient_checkpointing=bool(t["gradient_checkpointing"]),
                  report_to="none", logging_steps=1, disable_tqdm=True,
                  include_num_input_tokens_seen="non_padding",  # instrumentation: the same count as the job's
                  **({} if cuda else {"bf16": False, "use_cpu": True}),
                  **{k: v for k, v in options.items() if k != "padding_free"})
    if m["type"] == "sft":
        sft_only = {"padding_free": True} if options.get("padding_free") else {}
        trainer = SFTTrainer(model=model, args=SFTConfig(**common, **sft_only), train_dataset=sft_rows(rows),
                             processing_class=tok, peft_config=lora)
    else:
        trainer = DPOTrainer(model=model, args=DPOConfig(**common), train_dataset=rows, processing_class=tok,
                             peft_config=lora)
    timer = step_timer()
    trainer.add_callback(timer)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    trainer.train()
    dt = time.time() - t0
    tokens = trainer.state.num_input_tokens_seen
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    import resource

    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {**timed(timer.marks, warmup, int(m["batch_size"])),
            "peak_memory_bytes": peak, "train_s": dt, "tokens": tokens, "loop_tokens_per_s": tokens / dt,
            "final_loss": losses[-1] if losses else None, "first_loss": losses[0] if losses else None,
            "losses": losses, "settings": {"optimizer": str(getattr(trainer.args.optim, "value", trainer.args.optim)),
                         "precision": "bf16" if trainer.args.bf16 else "fp32",
                         "gradient_checkpointing": trainer.args.gradient_checkpointing,
                         "liger": bool(trainer.args.use_liger_kernel),
                         "padding_free": bool(getattr(trainer.args, "padding_free", False))}}


def usage_error(msg: str) -> None:
    print(f"gpu_qlora.py: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    side, _, opts = text.partition(":")
    if side not in ("trl", "alignkit"):
        usage_error(f"--variants: {text!r}: side must be trl or alignkit")
    options: dict[str, Any] = {}
    for kv in filter(None, opts.split(",")):
        key, _, value = kv.partition("=")
        options[key] = {"true": True, "false": False}.get(value, value)
    return side, options


def unavailable(kind: str, side: str, options: dict, cuda: bool) -> str | None:
    """Why a variant cannot run here, or None."""
    import importlib.util

    known = set(CONFIG_OPTIONS) | set(ARG_OPTIONS)
    if side == "alignkit" and set(options) - known:
        return f"unknown alignkit option(s) {sorted(set(options) - known)}"
    if side == "trl" and set(options) - {"liger", "padding_free"}:
        return f"unknown TRL option(s) {sorted(set(options) - {'liger', 'padding_free'})}"
    liger = options.get("liger") in ("on", True)
    if liger and not (cuda and importlib.util.find_spec("liger_kernel")):
        return "Liger needs CUDA and the liger-kernel package"
    if options.get("packing") or options.get("padding_free"):
        if kind != "sft":
            return "TRL's DPO ignores padding-free batching (warns, pads as usual)"
        if not importlib.util.find_spec("flash_attn"):
            return "padding-free batches are correct only with FlashAttention 2/3 (flash_attn not installed)"
    return None


def run_worker(side: str, cfg_path: Path, run_dir: Path, warmup: int, env: dict, timeout: float,
               in_process: bool = False) -> dict:
    if in_process:
        try:
            return (worker_alignkit if side == "alignkit" else worker_trl)(str(cfg_path), str(run_dir), warmup)
        except Exception as exc:  # a failed run is a row, as from a worker process
            import traceback

            traceback.print_exc()
            return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1:] or ''}"[:300]}
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", side, str(cfg_path), str(run_dir),
                               "--warmup", str(warmup)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        print((exc.stdout or b"")[-2000:], (exc.stderr or b"")[-4000:], sep="\n")
        return {"error": f"timed out after {timeout:.0f} s"}
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:]
        return {"error": f"exit {proc.returncode}: {tail[0][:300] if tail else ''}"}
    return json.loads(line[7:])


def expand(text: str) -> list[str]:
    """--variants: comma-separated side[:option=value]; `levers` stands for every alignkit lever."""
    out: list[str] = []
    for v in (v.strip() for v in text.split(",")):
        if v == "levers":
            out += [f"alignkit:{lever}" for lever in LEVERS]
        elif v:
            out.append(v)
    return out


def exactness(run: dict, job: dict, options: dict) -> dict:
    """A lever's per-step losses against the job's on the same batches (same seed and data)."""
    if any(k in REORDERS for k in options):
        return {"exact": None, "exact_detail": "reorders the samples: losses not comparable step by step"}
    a, b = run.get("losses") or [], job.get("losses") or []
    if not a or len(a) != len(b):
        return {"exact": None, "exact_detail": f"loss curves of different lengths ({len(a)} vs {len(b)})"}
    rel = max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b, strict=True))
    tol = 1e-5 if run["settings"].get("precision") == "fp32" else 2e-2  # the resume checks' tolerances
    return {"exact": rel <= tol, "loss_max_rel_diff": rel, "exact_detail": f"losses max rel diff {rel:.1e} (tol {tol:g})"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny model on CPU: checks the script end to end")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (20; 4 with --tiny)")
    ap.add_argument("--warmup", type=int, default=None, help="first steps left out of the rates (2; 1 with --tiny)")
    ap.add_argument("--kinds", default="sft,dpo")
    ap.add_argument("--variants", default="trl,alignkit",
                    help="comma-separated side[:option=value...] or `levers`; the first must be trl (the baseline)")
    ap.add_argument("--layers", type=int, default=32, help="layers of the 7B-shaped model (of 32)")
    ap.add_argument("--in-process", action="store_true", help="run the workers in this process")
    ap.add_argument("--deadline", type=float, default=None, help="seconds: start no run that would pass it")
    ap.add_argument("--out", default=None, help="work folder (model, data, runs, results.json)")
    ap.add_argument("--check-json", default=None, help="also write the result as a bench/gpu_check.sh step")
    ap.add_argument("--build-only", action="store_true", help="only build (and save) the model under --out")
    ap.add_argument("--worker", nargs=3, metavar=("SIDE", "CONFIG", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    warmup = a.warmup if a.warmup is not None else (1 if a.tiny else 2)
    if a.worker:
        side, cfg_path, out = a.worker
        result = (worker_alignkit if side == "alignkit" else worker_trl)(cfg_path, out, warmup)
        print("RESULT " + json.dumps(result))
        return 0

    started = time.time()
    sys.path.insert(0, str(ROOT))
    import torch

    cuda = torch.cuda.is_available()
    steps = a.steps or (4 if a.tiny else 20)
    out = Path(a.out or tempfile.mkdtemp(prefix="ak-gpu-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    variants = expand(a.variants)
    if not variants or variants[0] != "trl":
        usage_error("--variants must start with 'trl' (the baseline)")
    if not 1 <= a.layers <= 32:
        usage_error(f"--layers {a.layers}: between 1 and 32")
    for v in variants:
        parse_variant(v)  # every variant checked before the (long) model build
    model = build_model(out, a.tiny, a.layers)
    print(f"model {model} ready in {time.time() - started:.0f} s", flush=True)
    if a.build_only:
        return 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("AK_GPU_SITE"), str(ROOT)])),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TQDM_DISABLE="1")
    env.setdefault("OMP_NUM_THREADS", "2")
    kinds = a.kinds.split(",")
    results: dict = {"steps": steps, "warmup_steps": warmup, "tiny": a.tiny, "device": "cuda" if cuda else "cpu",
                     "gpu": torch.cuda.get_device_name(0) if cuda else None, "layers": None if a.tiny else a.layers,
                     "runs": {}, "ratios": {}}
    checks: list[dict] = []
    # Base pairs first (TRL, the job as compiled), then the levers and other variants, for every kind.
    order = [(k, v) for k in kinds for v in variants[:2]] + [(k, v) for v in variants[2:] for k in kinds]
    configs: dict[str, Path] = {}
    durations: list[float] = []

    def write() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=2))
        if a.check_json:
            Path(a.check_json).write_text(json.dumps({"results": results, "checks": checks}, indent=1))

    for kind, variant in order:
        side, options = parse_variant(variant)
        key = f"{kind}/{variant}"
        why = unavailable(kind, side, options, cuda)
        left = None if a.deadline is None else a.deadline - (time.time() - started)
        expected = max(durations) if durations else 0.0
        if why is None and left is not None and left < max(30.0, expected):
            why = f"deadline: {left:.0f} s left, a run took up to {expected:.0f} s"
        if why:
            results["runs"][key] = {"skipped": why}
            checks.append({"name": f"throughput {key}", "status": "skip", "detail": why})
            print(f"{key}: skipped ({why})", flush=True)
            continue
        if kind not in configs:
            cfg = alignkit_config(kind, model, build_data(out, rows=steps * 16 + 64), steps, a.tiny)
            configs[kind] = out / f"{kind}-config.json"
            configs[kind].write_text(json.dumps(cfg))
        cfg = json.loads(configs[kind].read_text())
        if side == "alignkit":
            for k, v in options.items():
                if k in CONFIG_OPTIONS:
                    cfg["training"][k] = ({True: "on", False: "off"}.get(v, v) if k == "liger" else v)
                elif v is True:
                    cfg.setdefault("trainer_args", {}).update(ARG_OPTIONS[k])
        else:
            cfg["trl_options"] = {("use_liger_kernel" if k == "liger" else k): v in ("on", True)
                                  for k, v in options.items()}
        cfg_path = out / f"{kind}-{variant.replace(':', '_').replace('=', '-').replace(',', '_')}.json"
        cfg_path.write_text(json.dumps(cfg))
        t0 = time.time()
        r = run_worker(side, cfg_path, out / cfg_path.stem, warmup, env,
                       timeout=left if left is not None else 3600, in_process=a.in_process)
        durations.append(time.time() - t0)
        results["runs"][key] = r
        if "error" in r:
            checks.append({"name": f"throughput {key}", "status": "fail", "detail": r["error"]})
            print(f"{key}: FAILED {r['error']}", flush=True)
            write()
            continue
        ratio: dict[str, Any] = {}
        for name, ref in (("vs_trl", results["runs"].get(f"{kind}/trl", {})),
                          ("vs_job", results["runs"].get(f"{kind}/alignkit", {}))):
            if "tokens_per_s" in ref and ref is not r:
                ratio[name] = {"tokens_per_s": r["tokens_per_s"] / ref["tokens_per_s"],
                               "samples_per_s": r["samples_per_s"] / ref["samples_per_s"],
                               "peak_memory": r["peak_memory_bytes"] / ref["peak_memory_bytes"]}
        lever = side == "alignkit" and options
        if lever and "losses" in results["runs"].get(f"{kind}/alignkit", {}):
            ratio.update(exactness(r, results["runs"][f"{kind}/alignkit"], options))
        if ratio:
            results["ratios"][key] = ratio
        detail = (f"{r['tokens_per_s']:.1f} tok/s, {r['samples_per_s']:.2f} samples/s (steps {warmup + 1}-"
                  f"{r['steps']}), peak {r['peak_memory_bytes'] / 2**30:.2f} GiB"
                  + "".join(f"; {n.replace('_', ' ')}: tokens/s x{q['tokens_per_s']:.2f}, memory x{q['peak_memory']:.2f}"
                            for n, q in ratio.items() if n.startswith("vs_"))
                  + (f"; {ratio['exact_detail']}" if "exact_detail" in ratio else "") + f"; {r['settings']}")
        checks.append({"name": f"throughput {key}", "status": "pass", "detail": detail,
                       **({"ratio": ratio} if ratio else {})})
        print(f"{key}: {detail}", flush=True)
        write()
    write()
    print(f"results: {out / 'results.json'}")
    return 1 if any(c["status"] == "fail" for c in checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
