"""Validation (issue 13 item 3, jobs side): held-out rows (a split, or a seeded fraction taken
before `limit`) never trained on, built into examples like the training ones, evaluated by TRL
every `training.eval_steps`, and train_metrics.json's "validation" curve equal after a resume.
Also the normalized format's `files: {preference: path}`."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.unit.train_configs import StopAtStep, SMOKE, train_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _key(row: dict) -> str:
    return json.dumps(row, sort_keys=True)


def _hh(**extra) -> dict:
    return {"name": "hh", "format": "hh_rlhf", "source": str(SMOKE / "hh-rlhf"), "revision": "main",
            "split": "train", "subsets": None, "limit": None, **extra}


def test_fraction_is_held_out_before_limit_by_its_own_seed_and_never_trained_on():
    from jobs.data import load_with_validation

    val = {"fraction": 0.1, "seed": 0}
    a = load_with_validation(_hh(validation=val), ["harmless", "helpful"], seed=0)
    b = load_with_validation(_hh(validation=val, limit=100), ["harmless", "helpful"], seed=1)
    everything = load_with_validation(_hh(), ["harmless", "helpful"], seed=0).train
    n = len(everything)  # 480 smoke rows
    assert len(a.validation) == 48 and len(a.train) == n - 48 and a.validation_report.total == 48
    # the smoke data repeats some rows, so rows are compared as multisets: held-out + trained = all
    held = Counter(map(_key, a.validation))
    assert held == Counter(map(_key, b.validation))  # the run seed and limit do not move it
    assert held + Counter(map(_key, a.train)) == Counter(map(_key, everything))
    assert not Counter(map(_key, b.train)) - (Counter(map(_key, everything)) - held)  # limit draws from the rest
    assert len(b.train) == 100
    other = load_with_validation(_hh(validation={"fraction": 0.1, "seed": 1}), ["harmless", "helpful"], seed=0)
    assert Counter(map(_key, other.validation)) != held
    # no validation: the training rows are exactly what they were before validation existed
    assert everything.to_list() == load_with_validation(_hh(), ["harmless", "helpful"], seed=0).train.to_list()


def test_split_reads_the_same_preferences_from_another_split():
    from jobs.data import load_preferences, load_with_validation
    from jobs.errors import JobFailure

    got = load_with_validation(_hh(validation={"split": "test"}), ["harmless"], seed=0)
    test = load_preferences(_hh(split="test"), ["harmless"], seed=0)
    assert sorted(map(_key, got.validation)) == sorted(map(_key, test)) and len(got.validation) > 0
    with pytest.raises(JobFailure, match="validation.split 'train' is the training split"):
        load_with_validation(_hh(validation={"split": "train"}), ["harmless"], seed=0)
    single = dict(_hh(), source=str(SMOKE / "hh-rlhf" / "helpful-base" / "train.jsonl.gz"), validation={"split": "test"})
    with pytest.raises(JobFailure, match="cannot come from the single file .*use validation.fraction"):
        load_with_validation(single, ["helpful"], seed=0)


def test_normalized_files_read_each_preference_from_its_own_file(tmp_path):
    from jobs.data import load_preferences_with_report
    from jobs.errors import JobFailure

    honest = tmp_path / "honest.jsonl"
    honest.write_text(json.dumps({"prompt": "Are you sure?", "chosen": "I am not certain.", "rejected": "Yes, 100%."}) + "\n")
    cfg = {"name": "mine", "format": "normalized", "source": str(tmp_path), "revision": "main", "split": "train",
           "subsets": None, "limit": None, "files": {"honest": str(honest), "helpful": str(FIX / "normalized" / "strings.jsonl")}}
    ds, report = load_preferences_with_report(cfg, ["helpful", "honest"], seed=0)
    assert [p.preference for p in report.parts] == ["helpful", "honest"]
    assert [p.source for p in report.parts] == [str(FIX / "normalized" / "strings.jsonl"), str(honest)]
    assert {"role": "user", "content": "Are you sure?"} in [r["prompt"][0] for r in ds]
    assert len(ds) == report.parts[0].kept + 1
    with pytest.raises(JobFailure, match="files has no entry for preference 'harmless' \\(it has: helpful, honest\\)"):
        load_preferences_with_report(cfg, ["harmless"], seed=0)
    # a beavertails dataset derives only helpful and harmless
    bt = {"name": "bt", "format": "beavertails", "source": str(SMOKE / "pku-saferlhf"), "revision": "main",
          "split": "train", "subsets": None, "limit": None}
    with pytest.raises(JobFailure, match="preference must list some of helpful, harmless, got \\['honest'\\]"):
        load_preferences_with_report(bt, ["honest"], seed=0)


def test_validation_examples_are_built_like_the_training_ones():
    from jobs import train
    from tests.unit.train_configs import typed

    config = train_config("dpo")
    config["dataset"]["validation"] = {"fraction": 0.05, "seed": 0}
    data = train.load_examples(typed(config))
    assert data.validation.column_names == data.dataset.column_names == ["prompt_ids", "chosen_ids", "rejected_ids"]
    assert data.report.validation == {"rows": len(data.validation), "examples": len(data.validation), "dropped": {}}
    def ex(ds):
        return Counter(json.dumps(r) for r in ds)

    del config["dataset"]["validation"]
    everything = train.load_examples(typed(config))
    assert len(data.validation) == 6  # ceil(0.05 x 120 smoke BeaverTails harmless pairs)
    assert ex(data.dataset) + ex(data.validation) == ex(everything.dataset)


# ---- training with validation (slow) ----

def _run(job: Path, config: dict, stop: threading.Event | None = None) -> dict:
    from jobs import train

    job.mkdir(parents=True, exist_ok=True)
    train.run(job, config, stop or threading.Event())
    return json.loads((job / "train_metrics.json").read_text())


@pytest.mark.slow
def test_dpo_validation_every_eval_steps_and_the_same_after_a_resume(tmp_path, _restore_process_state):
    from jobs import train
    from jobs.errors import Preempted

    config = train_config("dpo", max_steps=6, save_steps=3, logging_steps=2, eval_steps=2)
    config["dataset"]["validation"] = {"fraction": 0.05, "seed": 0}
    whole = _run(tmp_path / "whole", config)
    curve = whole["validation"]["curve"]
    assert [p["step"] for p in curve] == [2, 4, 6] and whole["validation"]["final"] == curve[-1]
    for p in curve:  # the loss and DPO's reward accuracy/margins, as TRL logs them (eval_*)
        assert {"loss", "reward_accuracy", "reward_margin", "reward_chosen", "reward_rejected"} <= set(p)
    assert curve[-1]["loss"] < curve[0]["loss"]
    assert whole["data"]["validation"]["examples"] > 0

    job = tmp_path / "cut"
    job.mkdir()
    with pytest.raises(Preempted, match="step 3"):
        train.run(job, config, StopAtStep(3))
    resumed = _run(job, config)
    assert resumed["attempts"] == 2 and [p["step"] for p in resumed["validation"]["curve"]] == [2, 4, 6]
    for a, b in zip(curve, resumed["validation"]["curve"], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (a["step"], k)


@pytest.mark.slow
def test_sft_validation_at_eval_steps_and_the_last_step_and_none_without(tmp_path, _restore_process_state):
    config = train_config("sft", max_steps=5, save_steps=5, eval_steps=2)
    config["dataset"]["validation"] = {"split": "test"}
    m = _run(tmp_path / "v", config)
    assert [p["step"] for p in m["validation"]["curve"]] == [2, 4, 5]  # and at the end (transformers' flow)
    assert all(p["loss"] > 0 and "token_accuracy" in p for p in m["validation"]["curve"])
    plain = _run(tmp_path / "plain", train_config("sft", max_steps=2, save_steps=2))
    assert "validation" not in plain and "validation" not in plain["data"]


def test_eval_steps_defaults_to_save_steps_and_only_with_validation():
    from tests.unit.train_configs import typed

    config = train_config("sft", max_steps=6, save_steps=3)
    assert typed(config).eval_steps is None
    config["dataset"]["validation"] = {"fraction": 0.1, "seed": 0}
    assert typed(config).eval_steps == 3
    config["training"]["eval_steps"] = 2
    assert typed(config).eval_steps == 2




@pytest.mark.slow
def test_a_compiled_spec_with_validation_trains_and_logs_it_through_the_job_entry(tmp_path, _restore_process_state):
    """The seam from the spec (dataset.validation, training.eval_steps) to the job: sweeps/smoke.yaml
    with a held-out fraction, one DPO run through `jobs.entry` as `submit` would run it."""
    from alignkit.compile import load_plan
    from alignkit.fsio import atomic_write_json
    from jobs.entry import run_job

    root = Path(__file__).resolve().parents[2]
    text = (root / "sweeps" / "smoke.yaml").read_text()
    text = text.replace("../assets", str(root / "assets")).replace("output_dir: runs/smoke", f"output_dir: {tmp_path / 'runs'}")
    text = text.replace("    source: %s/smoke-data/pku-saferlhf\n" % (root / "assets"),
                        "    source: %s/smoke-data/pku-saferlhf\n    validation: {fraction: 0.05, seed: 0}\n" % (root / "assets"))
    text = text.replace("  logging_steps: 2\n", "  logging_steps: 2\n  eval_steps: 5\n")
    spec = tmp_path / "smoke-val.yaml"
    spec.write_text(text)
    plan = load_plan(spec)
    job = next(j for j in plan.jobs if j.stage == "train" and j.config["axes"]["method"] == "dpo"
               and j.config["axes"]["peft"] == "lora")
    assert job.config["dataset"]["validation"] == {"fraction": 0.05, "seed": 0} and job.config["training"]["eval_steps"] == 5
    d = tmp_path / "runs" / "jobs" / job.id
    d.mkdir(parents=True)
    atomic_write_json(d / "config.json", job.config)
    assert run_job(d) == "done"
    m = json.loads((d / "train_metrics.json").read_text())
    assert [p["step"] for p in m["validation"]["curve"]] == [5, 10, 15, 20]
    held, data = m["data"]["validation"], m["data"]
    assert held["rows"] == held["examples"] == 18  # ceil(0.05 x 360 smoke helpful pairs), none trained on:
    assert data["total"] + held["rows"] == sum(p["kept"] for p in data["parts"]) == 360
    assert 0 <= m["validation"]["final"]["reward_accuracy"] <= 1
