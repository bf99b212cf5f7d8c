"""Chained stages end to end (issue 14 item 2): sweeps/tiny/sft-then-dpo.yaml on the local
executor. Each DPO run starts from its SFT run (continue: the SFT adapter trained on; merge: SFT
merged into the base, a fresh adapter) with the SFT model as its reference, so its first step's
loss is ln 2 and its rewards are 0 (policy = reference); evals, a merge and collect treat the
chained runs like any other."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.unit.train_configs import StopAtStep
from tests.unit.train_configs import typed

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "sweeps" / "tiny" / "sft-then-dpo.yaml"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("chain") / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "alignkit", "submit", str(SPEC), "--executor", "local", "-o", str(out),
                    "--skip-preflight"], check=True, env=env, cwd=ROOT, capture_output=True, timeout=120)
    jobs = [p for p in (out / "jobs").iterdir() if p.is_dir()]
    deadline = time.time() + 900
    while time.time() < deadline and not all((j / "DONE").exists() or (j / "error.json").exists() for j in jobs):
        time.sleep(2)
    errors = {j.name: json.loads((j / "error.json").read_text())["reason"] for j in jobs if (j / "error.json").exists()}
    assert not errors, errors
    return out


def _runs(sweep: Path) -> dict[tuple[str, str], Path]:
    out = {}
    for d in (sweep / "jobs").iterdir():
        if not (d / "config.json").is_file():
            continue  # the resume test's own job dirs
        cfg = json.loads((d / "config.json").read_text())
        if cfg["stage"] == "train":
            out[(cfg["axes"]["method"], cfg["axes"]["peft"])] = d
    return out


def test_chained_runs_start_from_sft_with_the_sft_model_as_reference(sweep):
    runs = _runs(sweep)
    assert len(runs) == 6 and all((d / "DONE").exists() for d in runs.values())
    for label in ("sft>dpo", "sft>dpo-merged"):
        for peft in ("lora", "qlora"):
            d = runs[(label, peft)]
            cfg = json.loads((d / "config.json").read_text())
            assert cfg["init"]["job"] == runs[("sft", peft)].name
            m = json.loads((d / "train_metrics.json").read_text())
            first = m["loss_curve"][0]
            assert first["step"] == 1
            # reference = starting policy: -log sigmoid(0) = ln 2, every reward 0 (TRL: beta * log ratio)
            assert first["loss"] == pytest.approx(math.log(2), abs=1e-6), (label, peft, first)
            assert first["reward_chosen"] == pytest.approx(0.0, abs=1e-6)
            assert first["reward_rejected"] == pytest.approx(0.0, abs=1e-6)
            assert m["final_loss"] < first["loss"] and m["loss_curve"][-1]["reward_margin"] > 0
            assert m["method"] == "dpo" and m["steps"] == 6


@pytest.mark.parametrize("peft", ["lora", "qlora"])
def test_merge_mode_starts_from_the_sft_model(sweep, peft):
    """init_model/ (what a merge-mode run trains on; QLoRA quantizes it again when loading) gives the
    SFT model's logits: the SFT run's base as it trained (QLoRA: dequantized) + its adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from jobs import base_weights

    runs = _runs(sweep)
    sft, chained = runs[("sft", peft)], runs[("sft>dpo-merged", peft)]
    ids = torch.arange(2, 12).unsqueeze(0)  # token ids the tiny vocabulary has
    with torch.no_grad():
        raw = base_weights.load(base_weights.of_train_job(sft), "cpu").to(torch.float32)(ids).logits
        base = base_weights.load(base_weights.of_train_job(sft), "cpu").to(torch.float32)
        want = PeftModel.from_pretrained(base, str(sft / "adapter")).eval()(ids).logits
        got = AutoModelForCausalLM.from_pretrained(str(chained / "init_model"), dtype=torch.float32).eval()(ids).logits
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert (raw - want).abs().max() > 1e-3  # the SFT adapter moved the model: the check can fail
    # evals and merges of the run see the same base (jobs.base_weights.of_train_job)
    assert base_weights.of_train_job(chained).source == str(chained / "init_model")


def test_evals_merge_and_collect_treat_chained_runs_like_any_other(sweep):
    evals = merges = 0
    for d in (sweep / "jobs").iterdir():
        cfg = json.loads((d / "config.json").read_text())
        if cfg["stage"] == "eval":
            evals += 1
            assert (d / "DONE").exists() and (d / "eval.json").exists()
        if cfg["stage"] == "merge":
            merges += 1
            assert cfg["axes"]["method"] == "{sft,dpo}" and (d / "DONE").exists()
    assert (evals, merges) == (7, 1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "alignkit", "collect", str(sweep), "--format", "csv", "--no-sacct"],
                   check=True, env=env, cwd=ROOT, capture_output=True, timeout=300)
    rows = list(csv.DictReader((sweep / "collect" / "results.csv").open()))  # the tidy table
    for stage in ("train", "eval"):
        assert {"sft", "sft>dpo", "sft>dpo-merged"} <= {r["method"] for r in rows if r["stage"] == stage}
    assert any(r["method"] == "sft>dpo" and r["benchmark"] == "mmlu" and r["value"] for r in rows)


@pytest.mark.parametrize("label,peft", [("sft>dpo", "qlora"), ("sft>dpo-merged", "lora")])
def test_interrupted_chained_run_resumes_to_the_uninterrupted_result(sweep, label, peft, _restore_process_state):
    """The same chained config run whole and cut at step 2 then rerun (beside its upstream, as in a
    sweep): the same loss curve and final adapter."""
    from safetensors.torch import load_file

    from jobs.train import stage as train
    from jobs.errors import Preempted

    config = json.loads((_runs(sweep)[(label, peft)] / "config.json").read_text())
    whole, cut = (sweep / "jobs" / f"resume-{peft}-{n}" for n in ("whole", "cut"))
    for d in (whole, cut):
        d.mkdir()
    train.run(whole, typed(config), threading.Event())
    with pytest.raises(Preempted, match="step 2"):
        train.run(cut, typed(config), StopAtStep(2))
    train.run(cut, typed(config), threading.Event())
    a, b = (json.loads((d / "train_metrics.json").read_text()) for d in (whole, cut))
    assert b["attempts"] == 2 and b["resumed_from_step"] == 2 and b["steps"] == 6
    assert a["loss_curve"][0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    for pa, pb in zip(a["loss_curve"], b["loss_curve"], strict=True):
        assert pa["step"] == pb["step"] and pa["loss"] == pytest.approx(pb["loss"], rel=1e-5, abs=1e-7)
    ta, tb = (load_file(d / "adapter" / "adapter_model.safetensors") for d in (whole, cut))
    assert ta.keys() == tb.keys() and not any(".ref." in k for k in ta)
    for k in ta:
        assert (ta[k].float() - tb[k].float()).abs().max().item() <= 1e-6, k


def test_continue_refuses_a_reference_method_whose_trainer_keeps_no_ref_adapter():
    """The guard behind `continue`: without TRL's frozen "ref" copy the reference would be the raw base."""
    from types import SimpleNamespace

    from jobs.train.chain import check_reference
    from jobs.errors import JobFailure

    dpo = SimpleNamespace(name="dpo", reference_model=True)
    with pytest.raises(JobFailure, match="kept no 'ref' copy of the upstream adapter.*use init_mode: merge"):
        check_reference(SimpleNamespace(peft_config={"default": None}), dpo)
    check_reference(SimpleNamespace(peft_config={"default": None, "ref": None}), dpo)
    check_reference(SimpleNamespace(peft_config={"default": None}), SimpleNamespace(name="orpo", reference_model=False))
