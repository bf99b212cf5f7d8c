"""The eval job's rates on a 7B-shaped model, per benchmark of sweeps/full.yaml: generation tokens/s
at the batch the eval job uses (jobs.eval.generate.HFGenerator, 64 on CUDA) and loglikelihood
requests/s. Written as the table `alignkit plan` reads (alignkit/plan/eval_rates.json's format).

    python bench/gpu_evalrate.py --out eval_rates.json [--markdown rates.md] [--check-json step.json]
    python bench/gpu_evalrate.py --tiny ...          # the tiny model on CPU: the script's mechanics

The model is a Llama-2-7B config with random weights, built in memory on the GPU in bf16 (the
dtype a QLoRA target is evaluated in, on its dequantized base), with the tiny model's tokenizer.
Prompts are synthetic text of each benchmark's typical prompt length (PROMPT_TOKENS); random
weights rarely emit EOS, so every row generates the full `new_tokens` (the rate of the long
tail that bounds a batch). Generation is timed through the eval job's own HFGenerator at a capped
length (NEW_TOKENS_CAP: decoding's per-token rate, not the configured 2,048 for AlpacaEval).
Loglikelihood: lm-eval groups the 4 single-token MMLU choices of one context into one forward
(its Collator's context grouping), so requests/s = 4 x contexts/s of forward passes at batch 16
(lm-eval's `auto` finds larger batches on an H100: a conservative figure). BBH (generate_until) is
timed as generation with a 3-shot prompt's length.

Once measured on a GPU, copy the JSON to alignkit/plan/eval_rates.json and the Markdown into docs/gpu.md
"Eval rates" (the plan then says its eval estimate comes from measured rates).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu_qlora import LLAMA_7B, TINY, WORDS  # noqa: E402

# Typical prompt lengths in tokens (Llama tokenizer), from the benchmarks' data: AlpacaEval
# instructions (~30), Red-Instruct's Chain-of-Utterance prompt with a question (~900),
# RealToxicityPrompts prefixes (~20), BBH 3-shot (~800), MMLU 5-shot (~650).
PROMPT_TOKENS = {"alpaca_eval": 40, "red_instruct": 900, "realtoxicity": 20, "bbh": 800, "mmlu": 650}
KINDS = {"alpaca_eval": "generation", "red_instruct": "generation", "realtoxicity": "generation",
         "bbh": "generate_until", "mmlu": "loglikelihood"}
NEW_TOKENS_CAP = 64
LL_BATCH, LL_CHOICES = 16, 4


def text_of(tok, n_tokens: int, rng: random.Random) -> str:
    words = []
    while len(tok(" ".join(words), add_special_tokens=False)["input_ids"]) < n_tokens:
        words += [rng.choice(WORDS) for _ in range(16)]
    ids = tok(" ".join(words), add_special_tokens=False)["input_ids"][:n_tokens]
    return tok.decode(ids)


def build(tiny: bool, device: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(TINY)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tiny:
        return AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32).to(device).eval(), tok
    cfg = LlamaConfig(**LLAMA_7B, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16)
    return model.eval(), tok


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def generation_rate(model, tok, device: str, prompt_tokens: int, new_tokens: int, batch: int) -> dict:
    from jobs.eval.generate import HFGenerator

    rng = random.Random(prompt_tokens)
    prompts = [text_of(tok, prompt_tokens, rng) for _ in range(batch)]
    gen = HFGenerator(model, tok, device)
    gen.batch_size = batch
    gen.generate(prompts[:2], 2)  # warm-up: kernels, allocator
    sync(device)
    t0 = time.perf_counter()
    outs = gen.generate(prompts, new_tokens)
    sync(device)
    dt = time.perf_counter() - t0
    made = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outs)
    return {"batch": gen.batch_size, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "seconds": round(dt, 3),
            "tokens_generated": made, "tokens_per_s": round(batch * new_tokens / dt, 1)}


def loglikelihood_rate(model, tok, device: str, context_tokens: int, batch: int, batches: int) -> dict:
    import torch

    rng = random.Random(context_tokens)
    texts = [text_of(tok, context_tokens, rng) for _ in range(batch)]
    enc = tok(texts, return_tensors="pt", padding=True).to(device)
    with torch.no_grad():
        model(**enc)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            logits = model(**enc).logits
            torch.log_softmax(logits[:, -1].float(), -1)  # what lm-eval reads for a one-token continuation
        sync(device)
    dt = time.perf_counter() - t0
    contexts = batch * batches
    return {"batch": batch, "context_tokens": context_tokens, "choices_per_context": LL_CHOICES, "seconds": round(dt, 3),
            "requests_per_s": round(contexts * LL_CHOICES / dt, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", required=True, help="the rate table (alignkit/plan/eval_rates.json's format)")
    ap.add_argument("--markdown", help="also write the table as Markdown (docs/gpu.md)")
    ap.add_argument("--check-json", help="also write the rows as a bench/gpu_check.sh step")
    a = ap.parse_args(argv)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
    model, tok = build(a.tiny, device)
    built_s = time.time() - t0
    gen_batch = 64 if device == "cuda" else 8  # jobs.eval.generate.HFGenerator's default
    new_tokens = NEW_TOKENS_CAP if device == "cuda" else 8
    scale = {} if device == "cuda" else {k: min(v, 64) for k, v in PROMPT_TOKENS.items()}  # CPU: mechanics only
    rows, checks = {}, []
    for name, kind in KINDS.items():
        n = scale.get(name, PROMPT_TOKENS[name])
        t = time.time()
        try:
            if kind == "loglikelihood":
                r = loglikelihood_rate(model, tok, device, n, LL_BATCH if device == "cuda" else 4,
                                       4 if device == "cuda" else 1)
            else:
                r = generation_rate(model, tok, device, n, new_tokens, gen_batch)
            rows[name] = {"kind": kind, **r}
            rate = f"{r['requests_per_s']:,} requests/s" if "requests_per_s" in r else f"{r['tokens_per_s']:,} tokens/s"
            checks.append({"name": f"eval_rate {name}", "status": "pass",
                           "detail": f"{kind}: {rate} (batch {r['batch']}, prompt {n} tokens, {time.time() - t:.1f} s)",
                           **r})
        except Exception as exc:  # one benchmark's failure is a row, the others still run
            checks.append({"name": f"eval_rate {name}", "status": "fail", "detail": f"{type(exc).__name__}: {exc}"[:300]})
        print(f"[{checks[-1]['status']:4s}] {checks[-1]['name']}: {checks[-1]['detail']}", flush=True)
    gen = [r["tokens_per_s"] for r in rows.values() if r["kind"] == "generation"]
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    table = {
        "format": 1, "measured": device == "cuda" and not a.tiny, "device": gpu or "cpu (tiny model: mechanics only)",
        "model": "tiny-llama (CPU rehearsal)" if a.tiny else "7B-shaped Llama, random weights, bf16",
        "basis": f"bench/gpu_evalrate.py on {gpu or 'CPU'}: generation through jobs.eval.generate.HFGenerator at batch "
                 f"{gen_batch}, {new_tokens} new tokens; loglikelihood as forward passes of {LL_CHOICES} requests each",
        "rates": {"generation": {"batch": gen_batch, "tokens_per_s": min(gen) if gen else None},
                  "generate_until": {"batch": gen_batch, "tokens_per_s": rows.get("bbh", {}).get("tokens_per_s")},
                  "loglikelihood": {"batch": LL_BATCH, "requests_per_s": rows.get("mmlu", {}).get("requests_per_s")}},
        "benchmarks": {k: {x: v[x] for x in ("kind", "batch", "tokens_per_s", "requests_per_s") if x in v}
                       for k, v in rows.items()},
        "build_s": round(built_s, 1), "wall_s": round(time.time() - t0, 1),
    }
    Path(a.out).write_text(json.dumps(table, indent=2) + "\n")
    if a.markdown:
        lines = ["| benchmark | work | batch | prompt tokens | rate |", "|---|---|---|---|---|"]
        for k, v in rows.items():
            rate = f"{v['requests_per_s']:,} requests/s" if "requests_per_s" in v else f"{v['tokens_per_s']:,} tokens/s"
            lines.append(f"| {k} | {v['kind']} | {v['batch']} | {v.get('prompt_tokens', v.get('context_tokens'))} | {rate} |")
        Path(a.markdown).write_text("\n".join(lines) + "\n")
    if a.check_json:
        Path(a.check_json).write_text(json.dumps({"results": table, "checks": checks}, indent=1))
    return 1 if any(c["status"] == "fail" for c in checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
