"""Evaluating K checkpoints: one base load + adapter swaps (what jobs.eval.stage does) vs a base reload per checkpoint.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python bench/eval_single_load.py [--k 7] [--big-layers 12]

Both paths run the same per-checkpoint work with jobs.eval.stage's own functions: load the adapter,
run the applied-adapter guard, and score a small lm-eval task (smoke_mmlu, `--limit` questions).
Measured for the committed tiny model and for a larger random-init Llama built from a config
(~85M parameters at the defaults), in the same run; the ratio is reload time / single-load time.
Each is measured with the base's weights in the page cache ("warm") and evicted from it before
every base load ("cold", posix_fadvise DONTNEED on the weight files only: a node that has not read
them, or a network file system). A 7B base is ~40x the larger model here.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "assets" / "tiny-llama"
TASKS = REPO / "assets" / "smoke-eval" / "tasks"


def build_big(out: Path, layers: int, hidden: int) -> int:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(TINY)
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=hidden * 8 // 3, num_hidden_layers=layers,
                      num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, vocab_size=len(tok),
                      max_position_embeddings=512, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def make_adapters(base_dir: Path, out: Path, k: int) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
    paths = []
    for i in range(k):
        torch.manual_seed(i)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n or "lora_A" in n:
                    p.normal_(0, 0.05)
        paths.append(out / f"step-{(i + 1) * 100}")
        model.save_pretrained(paths[-1])
    return paths


def evict(base_dir: Path) -> None:
    """Drop the base's weight files from the page cache (this file only), as on a node that has not read them."""
    for f in Path(base_dir).glob("*.safetensors"):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def per_checkpoint(model, tok, path: Path, bench: Any, tms: dict) -> None:
    from jobs.eval.stage import adapter_guard
    from alignkit.plugins.benchmarks.lm_eval_run import run_benchmark

    adapter_guard(model, tok, path, "cpu")
    run_benchmark(model, tok, "mmlu", bench, device="cpu", task_managers=tms)


def single_load(model_cfg: Any, paths: list[Path], bench: Any, tms: dict, cold: bool) -> tuple[float, float]:
    from jobs.eval.stage import AdapterSlot, load_base, load_tokenizer

    if cold:
        evict(Path(model_cfg.source))
    t0 = time.perf_counter()
    tok = load_tokenizer(model_cfg, model_cfg.source)
    slot = AdapterSlot(load_base(model_cfg, model_cfg.source, "cpu"))
    loading = time.perf_counter() - t0
    for i, p in enumerate(paths):
        t1 = time.perf_counter()
        model = slot.swap(str(i), p)
        loading += time.perf_counter() - t1
        per_checkpoint(model, tok, p, bench, tms)
    return time.perf_counter() - t0, loading


def reload_each(model_cfg: Any, paths: list[Path], bench: Any, tms: dict, cold: bool) -> tuple[float, float]:
    from jobs.eval.stage import AdapterSlot, load_base, load_tokenizer

    t0 = time.perf_counter()
    loading = 0.0
    for i, p in enumerate(paths):
        if cold:
            t_evict = time.perf_counter()
            evict(Path(model_cfg.source))
            t0 += time.perf_counter() - t_evict  # eviction itself is not part of either path
        t1 = time.perf_counter()
        tok = load_tokenizer(model_cfg, model_cfg.source)
        model = AdapterSlot(load_base(model_cfg, model_cfg.source, "cpu")).swap(str(i), p)
        loading += time.perf_counter() - t1
        per_checkpoint(model, tok, p, bench, tms)
        del model
    return time.perf_counter() - t0, loading


def measure(name: str, base_dir: Path, params: int, k: int, limit: int, tmp: Path, repeats: int) -> None:
    from jobs.eval.stage import load_base

    from alignkit.contract.common import ModelConfig  # the eval job's helpers take the typed config

    model_cfg = ModelConfig(name=name, source=str(base_dir), revision=None, template="chat_template",
                            kind="pretrained", dtype="float32")
    from alignkit.plugins.benchmarks import config_class

    bench = config_class()(type="lm_eval", task="smoke_mmlu", include_path=str(TASKS), num_fewshot=0,
                           metric="acc", limit=limit, chat_template=False)
    paths = make_adapters(base_dir, tmp / f"{name}-adapters", k)
    tms: dict = {}
    load_base(model_cfg, base_dir, "cpu")  # warm the page cache for both paths
    per_checkpoint(*_warm(model_cfg, paths[0]), paths[0], bench, tms)  # and lm-eval's task index
    # The CPU is shared: interleave the two paths and keep each one's best of `repeats`.
    for cold in (False, True):
        single, reload = (float("inf"), float("inf")), (float("inf"), float("inf"))
        for _ in range(repeats):
            single = min(single, single_load(model_cfg, paths, bench, tms, cold))
            reload = min(reload, reload_each(model_cfg, paths, bench, tms, cold))
        print(f"{name:>10} {params / 1e6:7.1f}M K={k} {'cold' if cold else 'warm'} page cache: "
              f"single-load {single[0]:7.2f} s (loading {single[1]:6.2f} s)  "
              f"reload-each {reload[0]:7.2f} s (loading {reload[1]:6.2f} s)  "
              f"total ratio {reload[0] / single[0]:5.2f}x  loading ratio {reload[1] / single[1]:5.2f}x", flush=True)


def _warm(model_cfg: Any, path: Path):
    from jobs.eval.stage import AdapterSlot, load_base, load_tokenizer

    tok = load_tokenizer(model_cfg, model_cfg.source)
    return AdapterSlot(load_base(model_cfg, model_cfg.source, "cpu")).swap("warm", path), tok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=7, help="checkpoints per run (the quantity study evaluates 7)")
    ap.add_argument("--limit", type=int, default=1, help="smoke_mmlu questions per checkpoint")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--big-layers", type=int, default=12)
    ap.add_argument("--big-hidden", type=int, default=768)
    args = ap.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    import logging

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        from transformers import AutoModelForCausalLM

        tiny_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(TINY).parameters())
        measure("tiny", TINY, tiny_params, args.k, args.limit, tmp, args.repeats)
        big = tmp / "big"
        params = build_big(big, args.big_layers, args.big_hidden)
        measure("llama-big", big, params, args.k, args.limit, tmp, args.repeats)


if __name__ == "__main__":
    main()
