"""QLoRA SFT and QLoRA DPO throughput and peak memory on a 7B-shaped Llama: alignkit's defaults
against TRL's defaults, same model, data, batch and steps, each run in a fresh process.

    python bench/gpu_qlora.py [--steps 20] [--kinds sft,dpo] [--out /tmp/ak-gpu-bench]   # one GPU
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
Reported per run: non-padding tokens/s over the training loop, samples/s, and
torch.cuda.max_memory_allocated(); then the alignkit/TRL ratios.
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


def build_model(out: Path, tiny: bool) -> Path:
    """A 7B-shaped Llama with random weights (or the tiny model for --tiny), saved in HF format."""
    if tiny:
        return TINY
    target = out / "llama-7b-random"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(TINY)
    cfg = LlamaConfig(**LLAMA_7B, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
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
    from alignkit.compile import load_plan

    plan = load_plan(ROOT / "sweeps" / "full.yaml", output_dir=Path(tempfile.gettempdir()) / "ak-bench-plan")
    job = next(j for j in plan.jobs if j.stage == "train" and j.config["axes"]["method"] == kind
               and j.config["axes"]["peft"] == "qlora")
    cfg = json.loads(json.dumps(job.config))
    cfg["model"].update(name="llama-7b-random", source=str(model), template="chat_template", dtype="bfloat16")
    cfg["dataset"] = {"name": "synthetic", "format": "normalized", "source": str(data), "revision": "main",
                      "split": "train", "subsets": None, "limit": None}
    cfg["preference"] = ["helpful"]
    cfg["training"].update(max_steps=steps, save_steps=steps, logging_steps=1)
    if tiny:  # the same code path at CPU scale
        cfg["method"].update(per_device_batch_size=2, batch_size=4, max_length=96, max_prompt_length=48)
    return cfg


def worker_alignkit(cfg_path: str, out: str) -> dict:
    from jobs.entry import run_job

    job = Path(out)
    job.mkdir(parents=True, exist_ok=True)
    (job / "config.json").write_text(Path(cfg_path).read_text())
    run_job(job)
    m = json.loads((job / "train_metrics.json").read_text())
    return {"tokens_per_s": m["tokens_per_s"], "samples_per_s": m["samples_per_s"],
            "peak_memory_bytes": m["peak_memory_bytes"], "train_s": m["train_wall_s"], "tokens": m["tokens_seen"],
            "final_loss": m["final_loss"], "settings": {k: m[k] for k in ("optimizer", "precision", "liger")}}


def worker_trl(cfg_path: str, out: str) -> dict:
    """TRL defaults: what a user writes with TRL's docs, matching only the fairness-relevant values."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from jobs.data import load_preferences, sft_rows

    cfg = json.loads(Path(cfg_path).read_text())
    m, t = cfg["method"], cfg["training"]
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
    rows = load_preferences(cfg["dataset"], cfg["preference"], cfg["seed"])
    common = dict(output_dir=out, max_steps=t["max_steps"], per_device_train_batch_size=m["per_device_batch_size"],
                  gradient_accumulation_steps=m["batch_size"] // m["per_device_batch_size"],
                  learning_rate=m["learning_rate"], max_length=m["max_length"], save_strategy="no",
                  report_to="none", logging_steps=1, disable_tqdm=True,
                  **({} if cuda else {"bf16": False, "use_cpu": True}))
    if m["type"] == "sft":
        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=sft_rows(rows),
                             processing_class=tok, peft_config=lora)
    else:
        trainer = DPOTrainer(model=model, args=DPOConfig(**common), train_dataset=rows, processing_class=tok,
                             peft_config=lora)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    trainer.train()
    dt = time.time() - t0
    tokens = max((h.get("num_tokens", 0) for h in trainer.state.log_history), default=0)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    import resource

    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"tokens_per_s": tokens / dt, "samples_per_s": t["max_steps"] * m["batch_size"] / dt,
            "peak_memory_bytes": peak, "train_s": dt, "tokens": tokens, "final_loss": losses[-1] if losses else None,
            "settings": {"optimizer": str(getattr(trainer.args.optim, "value", trainer.args.optim)), "precision": "bf16" if trainer.args.bf16 else "fp32",
                         "gradient_checkpointing": trainer.args.gradient_checkpointing}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny model on CPU: checks the script end to end")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (20; 4 with --tiny)")
    ap.add_argument("--kinds", default="sft,dpo")
    ap.add_argument("--out", default=None, help="work folder (model, data, runs, results.json)")
    ap.add_argument("--worker", nargs=3, metavar=("SIDE", "CONFIG", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        side, cfg_path, out = a.worker
        result = (worker_alignkit if side == "alignkit" else worker_trl)(cfg_path, out)
        print("RESULT " + json.dumps(result))
        return

    sys.path.insert(0, str(ROOT))
    steps = a.steps or (4 if a.tiny else 20)
    out = Path(a.out or tempfile.mkdtemp(prefix="ak-gpu-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = build_model(out, a.tiny)
    print(f"model {model} ready in {time.time() - t0:.0f} s", flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TQDM_DISABLE="1")
    env.setdefault("OMP_NUM_THREADS", "2")
    results: dict = {"steps": steps, "tiny": a.tiny, "runs": {}}
    for kind in a.kinds.split(","):
        cfg = alignkit_config(kind, model, build_data(out, rows=steps * 16 + 64), steps, a.tiny)
        cfg_path = out / f"{kind}-config.json"
        cfg_path.write_text(json.dumps(cfg))
        for side in ("trl", "alignkit"):
            run_dir = out / f"{kind}-{side}"
            proc = subprocess.run([sys.executable, __file__, "--worker", side, str(cfg_path), str(run_dir)],
                                  cwd=ROOT, env=env, capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
                raise SystemExit(f"{kind}/{side} failed (exit {proc.returncode})")
            r = json.loads(line[7:])
            results["runs"][f"{kind}/{side}"] = r
            print(f"{kind:3s} {side:8s} {r['tokens_per_s']:9.1f} tok/s  {r['samples_per_s']:7.2f} samples/s  "
                  f"peak {r['peak_memory_bytes'] / 2**30:6.2f} GiB  train {r['train_s']:6.1f} s  {r['settings']}",
                  flush=True)
        ak, trl = results["runs"][f"{kind}/alignkit"], results["runs"][f"{kind}/trl"]
        results[f"{kind}_ratio"] = {"throughput": ak["samples_per_s"] / trl["samples_per_s"],
                                    "peak_memory": ak["peak_memory_bytes"] / trl["peak_memory_bytes"]}
        print(f"{kind}: alignkit/TRL throughput x{results[f'{kind}_ratio']['throughput']:.2f}, "
              f"peak memory x{results[f'{kind}_ratio']['peak_memory']:.2f}", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
