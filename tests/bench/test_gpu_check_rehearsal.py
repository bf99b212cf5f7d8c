"""The GPU check's CPU rehearsal in the suite (issue 20 item 1): every check function of
`bench/gpu_check.sh --tiny` runs once here, except the carried-wheel install (a pip download of
~90 MiB; `make bench` rehearses it), so a refactor that breaks a GPU check fails the suite instead
of the next (rare, 15-minute) GPU lease.

AK_GPU_FAST=1 makes the runs small (4 steps, a few eval items, short sequences) and runs what the
real check starts in a fresh process (`python -m jobs.entry`, the throughput workers) in this one.
CUDA-only checks are skipped by the checks themselves, with their reason; the test requires that
exactly those are skipped and nothing fails.
"""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.slow

# Every check the rehearsal reports, by step; the CUDA-only ones are skipped on CPU with a reason.
EXPECTED = {
    "env": ["torch_sees_the_gpu", "carried_wheels_installed", "requirements_met"],
    "pitfalls": ["bnb_diagnostics", "bnb_linear4bit_no_grad_matches_dequant_matmul",
                 "bnb_paged_adamw_state_paged_after_resume", "qlora_zero3_storage_dtype_is_model_dtype",
                 "sdpa_left_padded_batch_finite_and_equal", "liger_loss_matches_and_lora_grads_nonzero",
                 "submitit_master_port_vs_ephemeral_range"],
    "correctness": ["dpo_qlora_uninterrupted", "dpo_qlora_interrupted_and_resumed_equals_uninterrupted",
                    "resumed_trainer_state", "dpo_first_step_loss_ln2_and_zero_margin",
                    "sft_dpo_first_step_losses_as_on_cpu", "sft_liger_first_step_loss_as_without",
                    "eval_adapter_swap_equals_fresh_load", "qlora_adapter_evaluated_equals_merged"],
    "deepspeed": ["deepspeed_zero2_lora_one_device"],
    "eval": ["eval_job_smoke_benchmarks", "lm_eval_batch_1_vs_8"],
}
CUDA_ONLY = {"torch_sees_the_gpu", "bnb_paged_adamw_state_paged_after_resume",
             "liger_loss_matches_and_lora_grads_nonzero", "sft_liger_first_step_loss_as_without"}
# Throughput: the base pair per method and the CPU-runnable levers (Liger and torch.compile's
# Triton kernels are the GPU's: Liger skips itself here; torch.compile on CPU compiles C++ for
# minutes, so the suite leaves it to `make bench`).
VARIANTS = "trl,alignkit,alignkit:group_by_length=true,alignkit:gradient_checkpointing=false," \
           "alignkit:gc_reentrant=true,alignkit:liger=on"


def test_every_gpu_check_runs_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("AK_GPU_FAST", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.delenv("AK_GPU_STEP_SINK", raising=False)
    from bench import gpu_check, gpu_evalrate, gpu_jobs, gpu_pitfalls, gpu_qlora

    work = tmp_path / "work"
    work.mkdir()
    steps = {"env": gpu_check.step_env, "pitfalls": gpu_pitfalls.step_pitfalls,
             "correctness": gpu_jobs.step_correctness, "deepspeed": gpu_jobs.step_deepspeed,
             "eval": gpu_jobs.step_eval}
    seconds = {}
    status = {}
    for name, fn in steps.items():
        t0 = time.time()
        result = fn(work, True)
        seconds[name] = round(time.time() - t0, 1)
        (work / f"step-{name}.json").write_text(json.dumps(result, default=str))
        status[name] = {"exit": 0, "seconds": int(seconds[name]), "budget_s": 0, "timed_out": False}
        rows = {r["name"]: r for r in result["checks"]}
        assert list(rows) == EXPECTED[name], f"{name}: checks {list(rows)}"
        for check, row in rows.items():
            want = "skip" if check in CUDA_ONLY else ("pass", "skip") if check == "carried_wheels_installed" else "pass"
            assert row["status"] in want, f"{name}/{check}: {row['status']}: {row.get('detail')}"

    t0 = time.time()  # the eval rates (the table plan's estimates read), on the tiny model
    rc = gpu_evalrate.main(["--tiny", "--out", str(work / "eval_rates.json"), "--check-json",
                            str(work / "step-evalrate.json")])
    seconds["evalrate"] = round(time.time() - t0, 1)
    status["evalrate"] = {"exit": rc, "seconds": int(seconds["evalrate"]), "budget_s": 0, "timed_out": False}
    rates = json.loads((work / "eval_rates.json").read_text())
    assert rc == 0 and rates["measured"] is False and set(rates["benchmarks"]) == set(gpu_evalrate.KINDS)
    assert rates["rates"]["loglikelihood"]["requests_per_s"] > 0 and rates["rates"]["generation"]["tokens_per_s"] > 0

    t0 = time.time()
    rc = gpu_qlora.main(["--tiny", "--in-process", "--steps", "2", "--warmup", "1", "--variants", VARIANTS,
                         "--out", str(work / "throughput"), "--check-json", str(work / "step-throughput.json")])
    seconds["throughput"] = round(time.time() - t0, 1)
    status["throughput"] = {"exit": rc, "seconds": int(seconds["throughput"]), "budget_s": 0, "timed_out": False}
    tput = json.loads((work / "step-throughput.json").read_text())
    rows = {c["name"]: c for c in tput["checks"]}
    for kind in ("sft", "dpo"):
        for v in VARIANTS.split(","):
            row = rows[f"throughput {kind}/{v}"]
            assert row["status"] == ("skip" if "liger" in v else "pass"), (kind, v, row)
        job = tput["results"]["runs"][f"{kind}/alignkit"]
        assert job["tokens_per_s"] > 0 and job["losses"], job
        ratios = tput["results"]["ratios"]
        # a lever that changes nothing numerically is exact; one that reorders the batches says so
        assert ratios[f"{kind}/alignkit:gc_reentrant=true"]["exact"] is True, ratios
        assert ratios[f"{kind}/alignkit:gradient_checkpointing=false"]["exact"] is True, ratios
        assert ratios[f"{kind}/alignkit:group_by_length=true"]["exact"] is None, ratios
    assert rc == 0

    (work / "status.json").write_text(json.dumps(status))
    summary = gpu_check.step_summary(work, True, tmp_path / "gpu_check.json", sum(seconds.values()))
    assert summary["passed"] and summary["counts"].get("fail", 0) == 0, summary["counts"]
    assert "install" not in summary["steps"] and set(summary["steps"]) == {*EXPECTED, "evalrate", "throughput"}
    print(f"rehearsal seconds per step: {seconds}")
