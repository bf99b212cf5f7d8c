"""Checks for the known GPU pitfalls of the pinned stack (../shared/docs/gpu-pitfalls.md), each
the check that document names. Those needing the training or eval job run in bench/gpu_jobs.py
(resume, first-step DPO loss and margin, reference adapter, adapter dtypes); these need no job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.gpu_check import ROOT, Checks, Skip, device, expect

TINY = ROOT / "assets" / "tiny-llama"


def bnb_diagnostics() -> dict:
    """`python -m bitsandbytes` exits 0 and, on CUDA 13, loads a cuda130 library; BNB_CUDA_VERSION unset."""
    env = {k: v for k, v in os.environ.items() if k != "BNB_CUDA_VERSION"}
    res = subprocess.run([sys.executable, "-m", "bitsandbytes"], capture_output=True, text=True, env=env, timeout=120)
    text = res.stdout + res.stderr
    print(text[-3000:])
    override = os.environ.get("BNB_CUDA_VERSION")
    if device() == "cpu":
        return expect(res.returncode == 0, f"exit {res.returncode} (CPU backend)"
                      + (f"; BNB_CUDA_VERSION={override} is set: unset it" if override else ""))
    import torch

    want = "cuda" + torch.version.cuda.replace(".", "")
    # bnb 0.50's report no longer prints the library's file name: ask the loaded library itself
    import bitsandbytes.cextension as cext

    lib = getattr(getattr(cext.lib, "_lib", None), "_name", None)
    lib = os.path.basename(lib) if lib else next((w for w in text.split() if "libbitsandbytes_cuda" in w), None)
    ok = res.returncode == 0 and lib is not None and want in lib and not override
    return expect(ok, f"exit {res.returncode}, library {lib}, torch CUDA {torch.version.cuda}"
                  + (f", BNB_CUDA_VERSION={override} set" if override else ""))


def linear4bit_matches_dequant() -> dict:
    """A no-grad Linear4bit forward equals dequantize-then-matmul (bnb 0.50's new inference GEMM)."""
    import bitsandbytes as bnb
    import torch
    from bitsandbytes.functional import dequantize_4bit

    dev = device()
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    torch.manual_seed(0)
    dense = torch.nn.Linear(512, 384, bias=False)
    q = bnb.nn.Linear4bit(512, 384, bias=False, compute_dtype=dtype, quant_type="nf4")
    q.weight = bnb.nn.Params4bit(dense.weight.data.clone(), requires_grad=False, quant_type="nf4")
    q = q.to(dev)
    if dev == "cpu":
        q.support_avx512bf16_for_cpu = False
    x = torch.randn(7, 512, device=dev, dtype=dtype)
    rows = {}
    for name, n in (("gemv (1 row)", 1), ("gemm (7 rows)", 7)):
        with torch.no_grad():
            got = q(x[:n]).float()
            w = dequantize_4bit(q.weight.data, q.weight.quant_state).to(dtype)
            ref = (x[:n] @ w.t()).float()
        rows[name] = ((got - ref).abs().max() / ref.abs().max()).item()
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    return {**expect(max(rows.values()) <= tol, ", ".join(f"{k}: max rel diff {v:.2e}" for k, v in rows.items())
                     + f" (tolerance {tol:g}, {str(dtype)[6:]})"), "rel_diff": rows}


def paged_state_survives_resume() -> dict:
    """bnb's load_state_dict copies state1/state2 into plain device tensors: after a resume they
    are no longer paged (seen on an H100, 2026-11-27). The HF Trainer resumes exactly like this
    (optimizer.pt saved, torch.load-ed, load_state_dict); jobs.train.paged_optim.RepageOnResume, which
    the train job adds, moves them back. Passes when, after our re-paging and one step, every large
    state is one of bnb's paged buffers, float32, and the step equals the uninterrupted one."""
    import io

    import torch

    if device() != "cuda":
        raise Skip("paged optimizers need CUDA")
    import bitsandbytes as bnb

    from jobs.train.paged_optim import repage_states

    def make():
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(1024, 1024, device="cuda"))  # > bnb's 1e5-element paging threshold
        return p, bnb.optim.PagedAdamW32bit([p], lr=1e-3)

    def step(p, opt, i):
        p.grad = torch.full_like(p, 1e-3 * (i + 1))
        opt.step()

    def paged(opt, p):
        ids = {id(t) for t in opt.page_mng.paged_tensors}
        return [(k, id(v) in ids, v.dtype) for k, v in opt.state[p].items() if torch.is_tensor(v) and v.numel() >= 1e5]

    p, opt = make()
    step(p, opt, 0)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    fresh = paged(opt, p)
    step(p, opt, 1)  # the uninterrupted run's second step
    p2, opt2 = make()
    step(p2, opt2, 0)
    buf.seek(0)
    opt2.load_state_dict(torch.load(buf, map_location="cuda", weights_only=False))
    raw = paged(opt2, p2)
    moved = repage_states(opt2)
    step(p2, opt2, 1)
    fixed = paged(opt2, p2)
    same = torch.equal(p, p2)
    ok = bool(fixed) and all(pg and dt == torch.float32 for _, pg, dt in fixed) and same
    return {**expect(ok, f"fresh: {fresh}; bnb after load_state_dict: {raw}; after repage_states ({moved} moved) "
                         f"+ 1 step: {fixed}; step equals uninterrupted: {same}"),
            "fresh": str(fresh), "bnb_after_load": str(raw), "repaged": str(fixed), "moved": moved,
            "bnb_unpages_on_load": not all(pg for _, pg, _ in raw)}


def zero3_storage_dtype() -> dict:
    """QLoRA under ZeRO-3 needs bnb_4bit_quant_storage == the model dtype (PEFT's DeepSpeed guide)."""
    from jobs.train.stage import resolve
    from tests.fixtures.train_configs import train_config, typed

    cfg = train_config("dpo", "qlora", deepspeed_stage=3)
    cfg["peft"]["quantization"]["storage_dtype"] = "uint8"
    plan = resolve(typed(cfg), cuda=True, world_size=1)  # the jobs take typed configs only
    q = plan.quantization  # a typed QuantSpec (alignkit.contract.sections) since the typed-contract refactor
    return expect(q.storage_dtype == plan.model_dtype,
                  f"stage 3: storage {q.storage_dtype}, model dtype {plan.model_dtype} (configured uint8)")


def left_padded_sdpa() -> dict:
    """A left-padded batch gives finite logits equal to the unpadded run (SDPA, bf16 on CUDA)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = device()
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    tok = AutoTokenizer.from_pretrained(TINY)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(TINY, dtype=dtype, attn_implementation="sdpa").to(dev).eval()
    texts = ["Hi.", "The quick brown fox jumps over the lazy dog and keeps running far away."]
    with torch.no_grad():
        batch = tok(texts, return_tensors="pt", padding=True).to(dev)
        padded = model(**batch).logits[:, -1].float()
        alone = torch.stack([model(**tok(t, return_tensors="pt").to(dev)).logits[0, -1].float() for t in texts])
    finite = bool(torch.isfinite(padded).all())
    rel = ((padded - alone).abs().max() / alone.abs().max()).item()
    tol = 3e-2 if dtype == torch.bfloat16 else 1e-4
    return {**expect(finite and rel <= tol, f"finite {finite}, last-token logits max rel diff {rel:.2e} "
                     f"(tolerance {tol:g}, {str(dtype)[6:]})"), "rel_diff": rel}


def liger_matches() -> dict:
    """Loss and LoRA gradients with and without Liger's kernels on one fixed batch: loss within 1e-2,
    every LoRA gradient non-zero with Liger wherever it is without, gradient sums within 5%.
    LoRA weights are random in both A and B (`init_lora_weights=False`): PEFT's default B = 0 makes
    every lora_A gradient exactly zero at the first step, which the first H100 run took for a Liger bug."""
    import torch

    if device() != "cuda":
        raise Skip("Liger's Triton kernels need a GPU")
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError as exc:
        raise Skip(f"liger-kernel not importable: {exc}") from None
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TINY)
    batch = tok(["The quick brown fox jumps over the lazy dog."] * 2, return_tensors="pt").to("cuda")
    out = {}
    for liger in (False, True):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.bfloat16).to("cuda")
        if liger:
            _apply_liger_kernel_to_instance(model=model)
        torch.manual_seed(1)
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        grads = {n: p.grad.float().abs().sum().item() for n, p in model.named_parameters()
                 if "lora_" in n and p.grad is not None}
        out[liger] = (loss.item(), grads)
    diff = abs(out[True][0] - out[False][0])
    plain, fused = out[False][1], out[True][1]
    zero = [n for n in plain if plain[n] > 0 and fused.get(n, 0.0) == 0.0]
    worst = max((abs(fused.get(n, 0.0) - g) / g for n, g in plain.items() if g > 0), default=float("inf"))
    ok = diff <= 1e-2 and not zero and worst <= 0.05
    return {**expect(ok, f"loss {out[False][0]:.5f} vs Liger {out[True][0]:.5f} (|diff| {diff:.2e}, tolerance 1e-2); "
                         f"{len(plain)} LoRA grads, {len(zero)} zero only with Liger; worst grad-sum rel diff "
                         f"{worst:.2e} (tolerance 5e-2)"), "loss_diff": diff, "worst_grad_rel_diff": worst}


def master_port_range() -> dict:
    """submitit's MASTER_PORT = Random(job_id).randint(20000, 60000): inside the ephemeral range?"""
    rng = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if not rng.exists():
        raise Skip("no /proc/sys/net/ipv4/ip_local_port_range here")
    lo, hi = map(int, rng.read_text().split())
    overlap = max(0, min(hi, 60000) - max(lo, 20000) + 1)
    # A finding about SLURM nodes, not this machine: reported, never failed here (no SLURM).
    return {"status": "pass", "detail": f"ephemeral ports {lo}-{hi}: {overlap} of submitit's 40001 possible "
            f"MASTER_PORTs fall inside it (matters on multi-task SLURM nodes; see docs/gpu.md)",
            "ephemeral_range": [lo, hi], "overlap": overlap}


def step_pitfalls(work: Path, tiny: bool) -> dict:
    checks = Checks()
    checks.run("bnb_diagnostics", bnb_diagnostics)
    checks.run("bnb_linear4bit_no_grad_matches_dequant_matmul", linear4bit_matches_dequant)
    checks.run("bnb_paged_adamw_state_paged_after_resume", paged_state_survives_resume)
    checks.run("qlora_zero3_storage_dtype_is_model_dtype", zero3_storage_dtype)
    checks.run("sdpa_left_padded_batch_finite_and_equal", left_padded_sdpa)
    checks.run("liger_loss_matches_and_lora_grads_nonzero", liger_matches)
    checks.run("submitit_master_port_vs_ephemeral_range", master_port_range)
    return {"checks": checks.rows}
