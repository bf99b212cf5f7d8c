"""Issue 14's methods on the tiny model and the smoke data: DPO's loss types (ipo, hinge, robust),
KTO, ORPO, CPO and SimPO train with LoRA and QLoRA (the loss falls, the method's own reward metric
moves the expected way, the TRL config gets the method's settings), and an interrupted-then-resumed
run equals an uninterrupted one."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest

from tests.unit.test_train_job import _adapter
from tests.unit.train_configs import StopAtStep, typed
from tests.unit.train_configs import train_config

pytestmark = pytest.mark.slow

# Each profile: (method type, its own fields). Values are the small-model test's, not a recipe's.
PROFILES = {
    "ipo": ("dpo", {"beta": 0.1, "max_prompt_length": 48, "loss_type": "ipo"}),
    "hinge": ("dpo", {"beta": 0.1, "max_prompt_length": 48, "loss_type": "hinge"}),
    "robust": ("dpo", {"beta": 0.1, "max_prompt_length": 48, "loss_type": "robust", "label_smoothing": 0.1}),
    "kto": ("kto", {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0, "max_prompt_length": 48}),
    "orpo": ("orpo", {"beta": 0.1, "max_prompt_length": 48}),
    "cpo": ("cpo", {"loss_type": "sigmoid", "beta": 0.1, "simpo_gamma": 0.5, "cpo_alpha": 1.0,
                    "label_smoothing": 0.0, "max_prompt_length": 48}),
    "simpo": ("cpo", {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 0.0,
                      "label_smoothing": 0.0, "max_prompt_length": 48}),
}


@pytest.fixture(autouse=True)
def _every_test_restores_process_state(_restore_process_state):
    # the training tests call run() in this interpreter (tests/unit/conftest.py)
    yield


def method_config(profile: str, peft: str, **kw) -> dict:
    kind, own = PROFILES[profile]
    config = train_config("dpo", peft, **kw)
    method = config["method"]
    for key in ("completion_only_loss", "beta", "max_prompt_length"):
        method.pop(key, None)
    method.update(type=kind, name=profile, **own)
    config["axes"]["method"] = profile
    return config


def _run(job_dir: Path, config: dict, stop: threading.Event | None = None) -> dict:
    from jobs.train import stage as train

    job_dir.mkdir(parents=True, exist_ok=True)
    train.run(job_dir, typed(config), stop or threading.Event())
    return json.loads((job_dir / "train_metrics.json").read_text())


@pytest.mark.parametrize("peft", ["lora", "qlora"])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_each_method_trains_and_its_reward_metric_moves(tmp_path, profile, peft):
    m = _run(tmp_path / "job", method_config(profile, peft, max_steps=6, save_steps=3))
    curve = m["loss_curve"]
    assert m["method"] == PROFILES[profile][0] and m["steps"] == 6 and m["checkpoints"] == [3, 6]
    assert m["final_loss"] < m["first_loss"], curve
    first, last = curve[0], curve[-1]
    if profile == "kto":
        # The policy starts as the reference: every reward 0, so the loss is 1 - sigmoid(0) = 0.5
        # (TRL's KTO loss with the KL term clamped at 0); then desirable rewards rise above undesirable ones.
        assert first["loss"] == pytest.approx(0.5, abs=1e-6) and first["reward_margin"] == pytest.approx(0, abs=1e-6)
        assert last["reward_margin"] > 0 and last["reward_chosen"] > 0 > last["reward_rejected"]
    else:
        assert first["reward_accuracy"] < 0.5 <= last["reward_accuracy"], curve
        assert last["reward_margin"] > first["reward_margin"], curve
    if PROFILES[profile][0] == "dpo":
        # The policy starts as the reference: DPO's loss at margin 0 is each loss type's value there
        at_zero = {"ipo": (1 / (2 * 0.1)) ** 2, "hinge": 1.0, "robust": math.log(2)}[profile]
        assert first["loss"] == pytest.approx(at_zero, rel=1e-4)
    if profile == "orpo":
        assert last["log_odds_ratio"] > first["log_odds_ratio"]
    if profile == "simpo":
        assert all(p["nll_loss"] == 0 for p in curve)  # cpo_alpha 0: no NLL term
    assert (tmp_path / "job" / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("profile,peft", [("kto", "lora"), ("orpo", "qlora"), ("simpo", "lora")])
def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path, profile, peft):
    from jobs.train import stage as train
    from jobs.errors import Preempted

    config = method_config(profile, peft, max_steps=8, save_steps=4, logging_steps=2)
    whole = _run(tmp_path / "whole", config)
    job = tmp_path / "cut"
    job.mkdir()
    with pytest.raises(Preempted, match="step 3"):
        train.run(job, typed(config), StopAtStep(3))
    assert (job / "checkpoints" / ".resume" / "checkpoint-3" / "COMPLETE").exists()
    resumed = _run(job, config)

    assert resumed["attempts"] == 2 and resumed["steps"] == 8
    assert [p["step"] for p in resumed["loss_curve"]] == [2, 4, 6, 8]
    for a, b in zip(whole["loss_curve"], resumed["loss_curve"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
        assert a["reward_margin"] == pytest.approx(b["reward_margin"], rel=1e-4, abs=1e-7)
    for step in ("adapter", "checkpoints/step-4", "checkpoints/step-8"):
        ta, tb = _adapter(tmp_path / "whole" / step), _adapter(job / step)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert (ta[k].float() - tb[k].float()).abs().max().item() <= 1e-6, (step, k)


@pytest.mark.parametrize("profile,peft", [("kto", "lora"), ("orpo", "qlora"), ("simpo", "lora")])
def test_two_processes_deepspeed_zero2_over_gloo(tmp_path, profile, peft):
    from tests.unit.test_train_job import _port, _two_processes

    job = tmp_path / "job"
    codes = _two_processes(job, method_config(profile, peft, max_steps=4, save_steps=2, deepspeed_stage=2), _port())
    assert codes == [0, 0], (job / "rank0.log").read_text()[-3000:]
    m = json.loads((job / "train_metrics.json").read_text())
    assert m["world_size"] == 2 and m["grad_accum"] == 1 and m["engine"] == "DeepSpeedEngine"
    assert m["steps"] == 4 and m["checkpoints"] == [2, 4] and m["final_loss"] < m["first_loss"]
    assert (job / "DONE").exists() and (job / "adapter" / "adapter_model.safetensors").exists()
