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

from tests.fixtures.train_configs import StopAtStep, SMOKE, train_config, typed, typed_dataset
from tests.fixtures.written import written

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
FIX = Path(__file__).resolve().parents[2] / "fixtures" / "data"


def _key(row: dict) -> str:
    return json.dumps(row, sort_keys=True)


def _hh(**extra) -> dict:
    return {"name": "hh", "format": "hh_rlhf", "source": str(SMOKE / "hh-rlhf"), "revision": "main",
            "split": "train", "subsets": None, "limit": None, **extra}


def test_fraction_is_held_out_before_limit_by_its_own_seed_and_never_trained_on():
    from jobs.data import load_with_validation

    val = {"fraction": 0.1, "seed": 0}
    a = load_with_validation(typed_dataset(_hh(validation=val)), ["harmless", "helpful"], seed=0)
    b = load_with_validation(typed_dataset(_hh(validation=val, limit=100)), ["harmless", "helpful"], seed=1)
    everything = load_with_validation(typed_dataset(_hh()), ["harmless", "helpful"], seed=0).train
    n = len(everything)  # 480 smoke rows
    # by prompt (jobs/data/split.py): about 10% of the distinct first user turns, none on both sides
    from jobs.data.split import prompt_key

    held_keys, train_keys = {prompt_key(r) for r in a.validation}, {prompt_key(r) for r in a.train}
    assert not held_keys & train_keys
    assert 0.03 < len(held_keys) / len(held_keys | train_keys) < 0.2
    assert len(a.train) == n - len(a.validation) and a.validation_report.total == len(a.validation) > 0
    # the smoke data repeats some rows, so rows are compared as multisets: held-out + trained = all
    held = Counter(map(_key, a.validation))
    assert held == Counter(map(_key, b.validation))  # the run seed and limit do not move it
    assert held + Counter(map(_key, a.train)) == Counter(map(_key, everything))
    assert not Counter(map(_key, b.train)) - (Counter(map(_key, everything)) - held)  # limit draws from the rest
    assert len(b.train) == 100
    other = load_with_validation(typed_dataset(_hh(validation={"fraction": 0.1, "seed": 1})), ["harmless", "helpful"], seed=0)
    assert Counter(map(_key, other.validation)) != held
    # no validation: the training rows are exactly what they were before validation existed
    assert everything.to_list() == load_with_validation(typed_dataset(_hh()), ["harmless", "helpful"], seed=0).train.to_list()


def test_split_reads_the_same_preferences_from_another_split():
    from jobs.data import load_preferences, load_with_validation
    from jobs.errors import JobFailure

    got = load_with_validation(typed_dataset(_hh(validation={"split": "test"})), ["harmless"], seed=0)
    test = load_preferences(typed_dataset(_hh(split="test")), ["harmless"], seed=0)
    assert sorted(map(_key, got.validation)) == sorted(map(_key, test)) and len(got.validation) > 0
    with pytest.raises(JobFailure, match="validation.split 'train' is the training split"):
        load_with_validation(typed_dataset(_hh(validation={"split": "train"})), ["harmless"], seed=0)
    single = dict(_hh(), source=str(SMOKE / "hh-rlhf" / "helpful-base" / "train.jsonl.gz"), validation={"split": "test"})
    with pytest.raises(JobFailure, match="cannot come from the single file .*use validation.fraction"):
        load_with_validation(typed_dataset(single), ["helpful"], seed=0)


def test_normalized_files_read_each_preference_from_its_own_file(tmp_path):
    from jobs.data import load_preferences_with_report
    from jobs.errors import JobFailure

    honest = tmp_path / "honest.jsonl"
    honest.write_text(json.dumps({"prompt": "Are you sure?", "chosen": "I am not certain.", "rejected": "Yes, 100%."}) + "\n")
    cfg = {"name": "mine", "format": "normalized", "source": str(tmp_path), "revision": "main", "split": "train",
           "subsets": None, "limit": None, "files": {"honest": str(honest), "helpful": str(FIX / "normalized" / "strings.jsonl")}}
    ds, report = load_preferences_with_report(typed_dataset(cfg), ["helpful", "honest"], seed=0)
    assert [p.preference for p in report.parts] == ["helpful", "honest"]
    assert [p.source for p in report.parts] == [str(FIX / "normalized" / "strings.jsonl"), str(honest)]
    assert {"role": "user", "content": "Are you sure?"} in [r["prompt"][0] for r in ds]
    assert len(ds) == report.parts[0].kept + 1
    with pytest.raises(JobFailure, match="files has no entry for preference 'harmless' \\(it has: helpful, honest\\)"):
        load_preferences_with_report(typed_dataset(cfg), ["harmless"], seed=0)
    # a beavertails dataset derives only helpful and harmless
    bt = {"name": "bt", "format": "beavertails", "source": str(SMOKE / "pku-saferlhf"), "revision": "main",
          "split": "train", "subsets": None, "limit": None}
    with pytest.raises(JobFailure, match="preference must list some of helpful, harmless, got \\['honest'\\]"):
        load_preferences_with_report(typed_dataset(bt), ["honest"], seed=0)


def test_validation_examples_are_built_like_the_training_ones():
    from jobs.train import stage as train

    config = train_config("dpo")
    config["dataset"]["validation"] = {"fraction": 0.05, "seed": 0}
    data = train.load_examples(typed(config))
    assert data.validation.column_names == data.dataset.column_names == ["prompt_ids", "chosen_ids", "rejected_ids"]
    assert data.report.validation == {"rows": len(data.validation), "examples": len(data.validation), "dropped": {}}
    def ex(ds):
        return Counter(json.dumps(r) for r in ds)

    del config["dataset"]["validation"]
    everything = train.load_examples(typed(config))
    assert 0 < len(data.validation) < 0.2 * len(everything.dataset)  # ~5% of the prompts of 120 smoke pairs
    assert ex(data.dataset) + ex(data.validation) == ex(everything.dataset)


REAL_HH = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "hh-rlhf" / "harmless-base-test-first1000.jsonl.gz"


def test_split_is_by_prompt_on_the_real_hh_rows():
    """The first 1,000 real HH-RLHF harmless-base test rows (../shared/data, provenance in its README):
    59 rows share their first human turn with another row (29 prompts). A row-level split puts some
    of those prompts on both sides; the split by prompt puts none."""
    import datasets

    from jobs.data import load_with_validation
    from jobs.data.split import prompt_key

    cfg = {"name": "hh", "format": "hh_rlhf", "source": str(REAL_HH.resolve()), "revision": "main", "split": "train",
           "subsets": None, "limit": None}
    everything = load_with_validation(typed_dataset(cfg), ["harmless"], seed=0).train
    keys = Counter(prompt_key(r) for r in everything)
    shared = {k for k, n in keys.items() if n > 1}
    assert (len(everything), sum(keys[k] for k in shared), len(shared)) == (995, 59, 29)   # 5 rows unusable
    both = 0
    for seed in range(3):
        got = load_with_validation(typed_dataset({**cfg, "validation": {"fraction": 0.1, "seed": seed}}), ["harmless"], seed=0)
        held, trained = {prompt_key(r) for r in got.validation}, {prompt_key(r) for r in got.train}
        assert not held & trained and len(got.validation) + len(got.train) == 995
        assert 0.06 < len(got.validation) / 995 < 0.14
        assert held & shared   # some shared prompts are held out, each with all of its rows
        rows = datasets.Dataset.from_list(everything.to_list()).train_test_split(test_size=0.1, seed=seed)
        both += len({prompt_key(r) for r in rows["test"]} & {prompt_key(r) for r in rows["train"]})
    assert both > 0   # what the row-level split (before issue 25) did


def test_a_mixture_holds_out_per_part_and_never_trains_on_its_parts_validation_rows():
    from jobs.data import load_with_validation

    val = {"fraction": 0.1, "seed": 3}
    mix = load_with_validation(typed_dataset(_hh(validation=val)), ["harmless", "helpful"], seed=0)
    parts = [load_with_validation(typed_dataset(_hh(validation=val)), [p], seed=0) for p in ("harmless", "helpful")]
    assert Counter(map(_key, mix.validation)) == sum((Counter(map(_key, p.validation)) for p in parts), Counter())
    trained = Counter(map(_key, mix.train))
    for p in parts:
        assert not set(map(_key, p.validation)) & set(trained)


def test_validation_fraction_extremes(tmp_path):
    """Issue 23 class 7: 0.999 is refused at plan (spec check, tests/plan/test_spec13.py) and, reaching a job
    anyway, in one line; 1e-9 holds out one row and the preview says so (not `beyond_limit`)."""
    from alignkit.cli.preview import preview
    from jobs.data.split import held_out
    from jobs.errors import JobFailure
    from jobs.data import load_with_validation

    assert held_out([{"prompt": [{"role": "user", "content": "hi"}]}] * 3, [3], 0.5, 0) == [True] * 3
    one_prompt = [{"prompt": "Same question?", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(4)]
    path = tmp_path / "one-prompt.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in one_prompt))
    cfg = {"name": "one", "format": "normalized", "source": str(path), "revision": "main", "split": "train",
           "subsets": None, "limit": None, "validation": {"fraction": 0.2, "seed": 0}}
    with pytest.raises(JobFailure, match=r"^dataset one: validation.fraction 0.2 holds out all 4 usable rows: "
                                         r"no training rows left"):
        load_with_validation(typed_dataset(cfg), ["helpful"], seed=0)
    config = train_config("sft")
    config["dataset"]["validation"] = {"fraction": 1e-9, "seed": 0}
    out = preview(config, 1)
    assert out["dropped"].get("held_out_validation", 0) >= 1 and "beyond_limit" not in out["dropped"], out["dropped"]
    assert out["rows_in"] == out["rows_kept"] + sum(out["dropped"].values())


# ---- training with validation (slow) ----

def _run(job: Path, config: dict, stop: threading.Event | None = None) -> dict:
    from jobs.train import stage as train

    job.mkdir(parents=True, exist_ok=True)
    train.run(job, typed(config), stop or threading.Event())
    return json.loads((job / "train_metrics.json").read_text())


@pytest.mark.slow
def test_dpo_validation_every_eval_steps_and_the_same_after_a_resume(tmp_path, _restore_process_state):
    from jobs.train import stage as train
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
        train.run(job, typed(config), StopAtStep(3))
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
    from tests.fixtures.train_configs import typed

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
    from alignkit.plan.compiler import load_plan
    from alignkit.contract.fsio import atomic_write_json
    from jobs.entry import run_job

    root = Path(__file__).resolve().parents[3]
    text = (root / "sweeps" / "smoke.yaml").read_text()
    text = text.replace("../assets", str(root / "assets")).replace("output_dir: runs/smoke", f"output_dir: {tmp_path / 'runs'}")
    text = text.replace("    source: %s/smoke-data/pku-saferlhf\n" % (root / "assets"),
                        "    source: %s/smoke-data/pku-saferlhf\n    validation: {fraction: 0.05, seed: 0}\n" % (root / "assets"))
    text = text.replace("  logging_steps: 2\n", "  logging_steps: 2\n  eval_steps: 5\n")
    spec = tmp_path / "smoke-val.yaml"
    spec.write_text(text)
    plan = load_plan(spec)
    job = next(j for j in plan.jobs if j.stage == "train" and written(j)["axes"]["method"] == "dpo"
               and written(j)["axes"]["peft"] == "lora")
    assert written(job)["dataset"]["validation"] == {"fraction": 0.05, "seed": 0} and written(job)["training"]["eval_steps"] == 5
    d = tmp_path / "runs" / "jobs" / job.id
    d.mkdir(parents=True)
    atomic_write_json(d / "config.json", written(job))
    assert run_job(d) == "done"
    m = json.loads((d / "train_metrics.json").read_text())
    assert [p["step"] for p in m["validation"]["curve"]] == [5, 10, 15, 20]
    held, data = m["data"]["validation"], m["data"]
    # the rows of ~5% of the 115 smoke prompts (jobs/data/split.py: by prompt), none trained on:
    assert held["rows"] == held["examples"] and 0 < held["rows"] < 0.15 * 360
    assert data["total"] + held["rows"] == sum(p["kept"] for p in data["parts"]) == 360
    assert 0 <= m["validation"]["final"]["reward_accuracy"] <= 1
