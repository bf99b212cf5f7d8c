"""Compiler: grid expansion, dependencies, resources, and stable content-hash ids."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignkit.plan.compiler import load_plan
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.written import written

ROOT = Path(__file__).resolve().parents[2]


def ids(plan):
    return {j.name: j.id for j in plan.jobs}


def test_grid_expands_with_evals_judges_and_merges(tmp_path):
    plan = load_plan(write(tmp_path, base()))
    s = plan.summary()
    assert s["jobs_per_stage"]["train"] == 2 * 2 * 2 * 2 * 2 * 2
    assert s["jobs_per_stage"]["merge"] == 2 * 2 * 2 * 2 * 2  # model x dataset x method x peft x seed
    # every train and every merge is evaluated; the judged benchmark adds a judge job per eval
    assert s["jobs_per_stage"]["eval"] == 64 + 32
    assert s["jobs_per_stage"]["judge"] == 64 + 32
    by_id = plan.by_id()
    for job in plan.jobs:
        for dep in job.depends_on:
            assert dep in by_id
        if job.stage == "eval":
            assert by_id[job.depends_on[0]].stage in ("train", "merge")
            assert written(job)["target"]["job"] == job.depends_on[0]
        if job.stage == "merge":
            inputs = [by_id[d] for d in job.depends_on]
            assert sorted(written(i)["axes"]["preference"] for i in inputs) == ["harmless", "helpful"]
            for key in ("model", "dataset", "method", "peft", "seed"):
                assert len({written(i)["axes"][key] for i in inputs}) == 1


def test_train_config_is_fully_resolved(tmp_path):
    plan = load_plan(write(tmp_path, base()))
    job = next(j for j in plan.jobs if j.name == "m1/hh/harmless/dpo/qlora/s1")
    c = written(job)
    assert c["method"]["beta"] == 0.1 and c["method"]["lr_scheduler"] == "cosine"
    assert c["method"]["lora"] == {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj"]}
    assert c["peft"]["quantization"]["quant_type"] == "nf4" and c["peft"]["quantization"]["double_quant"] is True
    assert c["dataset"]["subsets"] == {"helpful": "helpful-base", "harmless": "harmless-base"}
    assert c["preference"] == ["harmless"] and c["seed"] == 1
    assert c["training"]["save_steps"] == 100
    sft = next(j for j in plan.jobs if j.name == "m1/hh/harmless/sft/lora/s1")
    assert "beta" not in written(sft)["method"]
    ev = next(j for j in plan.jobs if j.name == "m1/hh/harmless/dpo/qlora/s1/eval")
    assert written(ev)["checkpoints"] == [100, "final"]
    # lm-eval without a chat template for every model, pre-trained (m1) or instruction-tuned (m2)
    assert written(ev)["benchmarks"]["mmlu"]["chat_template"] is False
    ev2 = next(j for j in plan.jobs if j.name == "m2/hh/harmless/dpo/qlora/s1/eval")
    assert written(ev2)["benchmarks"]["mmlu"]["chat_template"] is False
    assert "chat_template" not in written(ev2)["benchmarks"]["ae"]  # only lm-eval reads it
    judge = next(j for j in plan.jobs if j.name == "m1/hh/harmless/dpo/qlora/s1/judge")
    assert written(judge)["benchmarks"]["ae"]["judge"]["api_key_env"] == "KEY"


def test_base_models_are_evaluated_untrained(tmp_path):
    d = base()
    d["evals"]["base_models"] = True
    plan = load_plan(write(tmp_path, d))
    originals = [j for j in plan.jobs if j.name.split("/")[1:2] == ["original"]]
    assert sorted(j.name for j in originals) == ["m1/original/eval", "m1/original/judge",
                                                 "m2/original/eval", "m2/original/judge"]
    ev = next(j for j in originals if j.name == "m1/original/eval")
    assert ev.depends_on == () and written(ev)["target"] == {"kind": "base"} and written(ev)["checkpoints"] == ["final"]
    assert written(ev)["axes"]["preference"] == "original" and written(ev)["model"]["source"] == "org/model-one"
    judge = next(j for j in originals if j.name == "m1/original/judge")
    assert judge.depends_on == (ev.id,)


def test_include_exclude_and_zip(tmp_path):
    d = base()
    d["include"] = [{"model": "m1", "dataset": "bt", "preference": "helpful+harmless"}]
    d["exclude"] = [{"model": "m2", "peft": "qlora"}]
    plan = load_plan(write(tmp_path, d))
    trains = [j for j in plan.jobs if j.stage == "train"]
    assert not any(written(j)["axes"]["model"] == "m2" and written(j)["axes"]["peft"] == "qlora" for j in trains)
    mixtures = [j for j in trains if len(written(j)["preference"]) > 1]
    assert len(mixtures) == 2 * 2 * 2  # methods x peft x seeds, for m1/bt
    assert all(written(j)["preference"] == ["harmless", "helpful"] for j in mixtures)
    d = base()
    d["grid"].pop("model")
    d["grid"].pop("dataset")
    d["zip"] = [{"model": ["m1", "m2"], "dataset": ["hh", "bt"]}]
    trains = [j for j in load_plan(write(tmp_path, d)).jobs if j.stage == "train"]
    assert {(written(j)["axes"]["model"], written(j)["axes"]["dataset"]) for j in trains} == {("m1", "hh"), ("m2", "bt")}


def test_resources_overrides_and_profile(tmp_path):
    d = base()
    d["resources"]["overrides"] = [{"stage": "train", "where": {"method": "dpo"}, "time": "1-00:00:00", "estimate": 90}]
    plan = load_plan(write(tmp_path, d), profile=str(ROOT / "slurm/profiles/dev.yaml"))
    dpo = next(j for j in plan.jobs if j.stage == "train" and written(j)["axes"]["method"] == "dpo")
    sft = next(j for j in plan.jobs if j.stage == "train" and written(j)["axes"]["method"] == "sft")
    assert dpo.resources.time_min == 24 * 60 and dpo.resources.estimate_min == 90
    assert sft.resources.time_min == 120 and sft.resources.partition == "debug"
    assert dpo.resources.key() != sft.resources.key()
    assert len([a for a in plan.summary()["arrays"] if a["stage"] == "train"]) == 2


# ---- ids --------------------------------------------------------------------------------------

def _shuffled(obj, rng):
    if isinstance(obj, dict):
        items = list(obj.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(obj, list):
        return [_shuffled(v, rng) for v in obj]
    return obj


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), flow=st.booleans())
def test_ids_ignore_key_order_axis_order_and_formatting(tmp_path, seed, flow):
    rng = random.Random(seed)
    d = base()
    ref = ids(load_plan(write(tmp_path, d, "a.yaml")))
    shuffled = _shuffled(d, rng)
    for axis in shuffled["grid"]:
        rng.shuffle(shuffled["grid"][axis])
    shuffled["methods"]["sft"]["learning_rate"] = "2e-4" if flow else 0.0002  # same number, other spelling
    text = yaml.safe_dump(shuffled, sort_keys=False, default_flow_style=flow)
    assert ids(load_plan(write(tmp_path, text, "b.yaml"))) == ref


CHANGES = [
    ("methods.sft.learning_rate", 3e-4), ("methods.dpo.beta", 0.2), ("methods.sft.lora.r", 32),
    ("methods.dpo.lora.target_modules", ["q_proj"]), ("training.max_steps", 800), ("models.m1.revision", "abc123"),
    ("datasets.hh.limit", 100), ("peft.qlora.quantization.double_quant", False), ("methods.sft.max_length", 1024),
]


@settings(max_examples=len(CHANGES) * 2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=st.sampled_from(CHANGES))
def test_a_result_affecting_change_gives_new_ids_for_the_job_and_its_dependents(tmp_path, change):
    path, value = change
    before = load_plan(write(tmp_path, base(), "a.yaml"))
    d = base()
    cur = d
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[k]
    cur[keys[-1]] = value
    after = load_plan(write(tmp_path, d, "b.yaml"))
    old, new = ids(before), ids(after)
    changed = {n for n in old if old[n] != new.get(n)}
    assert changed, path
    for job in before.jobs:  # a changed job's dependents change too
        if any(by_name(before, dep) in changed for dep in job.depends_on):
            assert job.name in changed


def by_name(plan, job_id):
    return next(j.name for j in plan.jobs if j.id == job_id)


def test_changing_resources_or_renaming_keeps_ids(tmp_path):
    before = load_plan(write(tmp_path, base(), "a.yaml"))
    d = base()
    d["resources"]["train"]["gpus"] = 4
    assert {j.id for j in load_plan(write(tmp_path, d, "b.yaml")).jobs} == {j.id for j in before.jobs}
    d = base()
    d["evals"]["benchmarks"]["mmlu"]["num_fewshot"] = 0  # changes evals only, not training
    after = load_plan(write(tmp_path, d, "c.yaml"))
    t_before = {j.id for j in before.jobs if j.stage in ("train", "merge")}
    assert t_before == {j.id for j in after.jobs if j.stage in ("train", "merge")}
    assert {j.id for j in before.jobs if j.stage == "eval"}.isdisjoint({j.id for j in after.jobs if j.stage == "eval"})


def test_duplicate_runs_are_refused(tmp_path):
    d = base()
    d["models"]["m2"] = dict(d["models"]["m1"])
    import pytest
    from alignkit.contract.errors import SpecError
    with pytest.raises(SpecError, match="resolve to the same config"):
        load_plan(write(tmp_path, d))


# ---- the shipped sweeps --------------------------------------------------------------------------

def test_full_yaml_is_the_papers_study():
    plan = load_plan(ROOT / "sweeps/full.yaml", profile="dev")
    trains = [j for j in plan.jobs if j.stage == "train"]
    plain = [j for j in trains if len(written(j)["preference"]) == 1]
    assert len(plain) == 320
    mixtures = [j for j in trains if len(written(j)["preference"]) == 2]
    assert len(mixtures) == 2 * 2 * 2 * 5 and {written(j)["axes"]["dataset"] for j in mixtures} == {"beavertails"}
    for j in trains:
        m = written(j)["method"]
        if m["type"] == "sft":
            assert (m["learning_rate"], m["lora"]["r"], m["lora"]["alpha"], m["lora"]["dropout"]) == (2e-4, 64, 16, 0.1)
            assert m["lora"]["target_modules"] == ["q_proj", "v_proj"] and m["lr_scheduler"] == "constant"
            assert (m["max_grad_norm"], m["weight_decay"]) == (0.3, 0.001)
        else:
            assert (m["learning_rate"], m["lora"]["r"], m["lora"]["alpha"], m["lora"]["dropout"]) == (5e-5, 16, 32, 0.05)
            assert m["lora"]["target_modules"] == ["k_proj", "gate_proj", "v_proj", "up_proj", "q_proj", "o_proj", "down_proj"]
            assert (m["lr_scheduler"], m["max_grad_norm"], m["weight_decay"]) == ("cosine", 1.0, 0.0)
        assert m["batch_size"] == 16 and m["optimizer"] == "paged_adamw_32bit"
        assert written(j)["training"]["max_steps"] == 700 and written(j)["training"]["save_steps"] == 100
    by_id = plan.by_id()
    evals = [j for j in plan.jobs if j.stage == "eval" and written(j)["target"]["kind"] != "base"]
    evaluated = {by_id[e.depends_on[0]].id: e for e in evals}
    # the four untrained models too: the paper's "Original" rows
    base = [j for j in plan.jobs if j.stage == "eval" and written(j)["target"]["kind"] == "base"]
    assert sorted(written(j)["model"]["name"] for j in base) == ["llama-7b", "mistral-7b", "mistral-7b-instruct",
                                                               "vicuna-7b"]
    every = [100, 200, 300, 400, 500, 600, "final"]
    for t in trains:  # every checkpoint of every training run is evaluated, on all five benchmarks
        e = evaluated[t.id]
        assert written(e)["checkpoints"] == every
        assert set(written(e)["benchmarks"]) == {"mmlu", "bbh", "alpaca_eval", "realtoxicity", "red_instruct"}
        # lm-eval and RealToxicityPrompts every 100 steps, the GPT-4-judged ones at the final checkpoint
        assert {n: b["checkpoints"] for n, b in written(e)["benchmarks"].items()} == {
            "mmlu": every, "bbh": every, "realtoxicity": every, "alpaca_eval": ["final"], "red_instruct": ["final"]}
    merges = [j for j in plan.jobs if j.stage == "merge"]
    assert len(merges) == 100
    for m in merges:
        inputs = [by_id[d] for d in m.depends_on]
        assert all(i.stage == "train" for i in inputs) and len({written(i)["axes"]["model"] for i in inputs}) == 1
        n = 4 if written(m)["merge"]["name"] == "dare-sft+dpo" else 2
        assert len(inputs) == n
        assert m.id in evaluated
    # 9 arrays for the runs and merges, + one eval and one judge array for the untrained models
    assert len(plan.summary()["arrays"]) == 11
    assert plan.summary()["jobs"] == 1388  # 1,380 + 4 base-model evals + their 4 judge jobs


def test_full_yaml_marks_every_unstated_value():
    text = (ROOT / "sweeps/full.yaml").read_text()
    for key in ("beta:", "max_length:", "max_prompt_length:", "quant_type", "num_fewshot: 5", "t: 0.5"):
        line = next(line for line in text.splitlines() if key in line and not line.strip().startswith("#"))
        if "#" not in line:  # the marker may sit on the enclosing block's line
            block = text[: text.index(line)].splitlines()[-3:]
            assert any("not stated in the paper" in b for b in block), key
        else:
            assert "not stated in the paper" in line or "inferred" in line.lower(), key


def test_plan_json_is_stable_and_documented(tmp_path):
    out = subprocess.run([sys.executable, "-m", "alignkit", "plan", str(ROOT / "sweeps/smoke.yaml"), "--json"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    plan = json.loads(out)
    assert set(plan) == {"format", "sweep", "spec", "output_dir", "profile", "axes", "select", "jobs", "summary"}
    assert plan["axes"] == ["model", "dataset", "preference", "method", "peft", "seed"] and plan["select"] is None
    for job in plan["jobs"]:
        assert set(job) == {"id", "name", "stage", "depends_on", "config", "resources"}
        assert len(job["id"]) == 12
    again = json.loads(subprocess.run([sys.executable, "-m", "alignkit", "plan", str(ROOT / "sweeps/smoke.yaml"),
                                       "--json"], capture_output=True, text=True, check=True, cwd=tmp_path).stdout)
    assert [j["id"] for j in again["jobs"]] == [j["id"] for j in plan["jobs"]]


def test_cli_does_not_import_heavy_libraries():
    code = ("import sys, alignkit.cli.main as m; m.build_parser(); "
            "import alignkit.plan.compiler, alignkit.spec.load, alignkit.contract.hub; "
            "bad=[x for x in ('torch','transformers','trl','peft','deepspeed','lm_eval','bitsandbytes','datasets',"
            "'pandas','matplotlib') if x in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "alignkit", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "transformers", "trl", "peft", "deepspeed", "lm_eval", "bitsandbytes"}
