"""The shipped studies (sweeps/hparam-search.yaml, preferences-3.yaml, quantity.yaml, model-size.yaml)
plan on a real cluster profile (slurm/profiles/template.yaml) with the job counts and resolved
values their designs call for. Every expected number is worked out by hand in a comment from the
paper (../shared/docs/paper.md) or the spec's own stated design, not copied from the tool's output."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from alignkit.plan.compiler import load_plan
from tests.fixtures.written import written

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = ROOT / "sweeps"


def _plan(name: str):
    return load_plan(SWEEPS / f"{name}.yaml", "template")


def _stages(plan) -> Counter:
    return Counter(j.stage for j in plan.jobs)


def _trains(plan) -> list:
    return [j for j in plan.jobs if j.stage == "train"]


def _distinct_ids(plan) -> None:
    assert len({j.id for j in plan.jobs}) == len(plan.jobs)


# ---- hparam-search -----------------------------------------------------------------------------

def test_hparam_search_is_the_papers_rank_alpha_grid_per_method():
    plan = _plan("hparam-search")
    # App. B: SFT r in {32,64,128} x alpha in {16,32,64} = 9, DPO r in {8,16,32} x alpha {16,32,64} = 9;
    # per (model, preference): 4 models x 2 preferences = 8 cells -> 18 x 8 = 144 runs; no benchmark,
    # so no eval or judge job
    assert _stages(plan) == {"train": 144}
    _distinct_ids(plan)
    settings = Counter((written(t)["method"]["type"], written(t)["method"]["lora"]["r"], written(t)["method"]["lora"]["alpha"])
                       for t in _trains(plan))
    want = {("sft", r, a) for r in (32, 64, 128) for a in (16, 32, 64)} | \
           {("dpo", r, a) for r in (8, 16, 32) for a in (16, 32, 64)}
    assert set(settings) == want and set(settings.values()) == {8}
    for t in _trains(plan):
        cfg = written(t)
        # the swept values are in the config (and so in the id) and named as axes
        assert cfg["axes"]["method.lora.r"] == cfg["method"]["lora"]["r"]
        assert cfg["axes"]["method.lora.alpha"] == cfg["method"]["lora"]["alpha"]
        # everything else is Table 6: lr 2e-4 / 5e-5, dropout 0.1 / 0.05, 700 steps
        sft = cfg["method"]["type"] == "sft"
        assert cfg["method"]["learning_rate"] == (2.0e-4 if sft else 5.0e-5)
        assert cfg["method"]["lora"]["dropout"] == (0.1 if sft else 0.05)
        assert cfg["training"]["max_steps"] == 700
        # validation: 2% held out, logged at steps 350 and 700
        assert cfg["dataset"]["validation"] == {"fraction": 0.02, "seed": 0}
        assert cfg["training"]["eval_steps"] == 350
        assert cfg["peft"]["name"] == "qlora" and cfg["seed"] == 0


def test_hparam_search_selects_on_validation_loss_per_method():
    plan = _plan("hparam-search")
    manifest = plan.to_json()  # what manifest.json records
    assert manifest["select"] == {"metric": "validation_loss", "goal": "min",
                                  "over": ["method.lora.r", "method.lora.alpha"], "by": ["method"],
                                  "checkpoint": "final"}
    # the axes actually swept: the six named ones, then the two dotted ones in spec order
    assert manifest["axes"] == ["model", "dataset", "preference", "method", "peft", "seed",
                                "method.lora.r", "method.lora.alpha"]


# ---- preferences-3 -----------------------------------------------------------------------------

def test_preferences_3_trains_a_third_preference_alone_and_mixed_and_merges_three_ways():
    plan = _plan("preferences-3")
    # train: 2 models x {helpful, harmless, honest, harmless+helpful+honest} x {sft, dpo} x 5 seeds = 80
    # merge: per (model, method, seed) one group of 3 single-preference runs = 2 x 2 x 5 = 20 groups,
    #        x 3 merges (dare3, ties3, linear3) = 60
    # eval: every run (80) + every merge (60) + the 2 untrained models = 142; judge: one per eval = 142
    assert _stages(plan) == {"train": 80, "merge": 60, "eval": 142, "judge": 142}
    _distinct_ids(plan)
    data = SWEEPS / "data" / "preferences-3"
    prefs = Counter(tuple(written(t)["preference"]) for t in _trains(plan))
    assert prefs == {("helpful",): 20, ("harmless",): 20, ("honest",): 20, ("harmless", "helpful", "honest"): 20}
    for t in _trains(plan):
        files = written(t)["dataset"]["files"]
        assert files == {p: str(data / f"{p}.jsonl") for p in ("helpful", "harmless", "honest")}
        assert Path(files["honest"]).is_file()
    trains = {t.id: t for t in _trains(plan)}
    merges = [j for j in plan.jobs if j.stage == "merge"]
    assert Counter(written(m)["merge"]["method"] for m in merges) == {"dare_ties": 20, "ties": 20, "linear": 20}
    for m in merges:
        inputs = [written(trains[i]) for i in written(m)["inputs"]]
        assert sorted(c["preference"][0] for c in inputs) == ["harmless", "helpful", "honest"]
        assert len({(c["model"]["name"], c["method"]["name"], c["seed"]) for c in inputs}) == 1
    assert {written(m)["merge"]["method"]: written(m)["merge"]["parameters"] for m in merges} == {
        "dare_ties": {"density": 0.5}, "ties": {"density": 0.5}, "linear": {}}


def test_preferences_3_example_files_are_in_the_normalized_format():
    """The shipped example files pass the train job's own normalized-format reader, every pair kept."""
    import datasets

    from alignkit.plugins.formats import normalized
    from jobs.data.report import PartReport

    for name in ("helpful", "harmless", "honest"):
        path = SWEEPS / "data" / "preferences-3" / f"{name}.jsonl"
        ds = datasets.load_dataset("json", data_files=str(path), split="train")
        part = PartReport(preference=name, source=str(path))
        rows = normalized.convert(ds, str(path), part)
        assert (part.rows, part.kept, dict(part.dropped)) == (12, 12, {})
        assert all(r["prompt"][-1]["role"] == "user" and r["chosen"] != r["rejected"] for r in rows)


# ---- quantity ----------------------------------------------------------------------------------

def test_quantity_sweeps_data_size_with_matched_steps():
    plan = _plan("quantity")
    # train: 2 models x 2 preferences x 2 methods x 5 seeds x 4 (limit, steps) pairs = 160;
    # eval: one per run + the 2 untrained models = 162; no judged benchmark
    assert _stages(plan) == {"train": 160, "eval": 162}
    _distinct_ids(plan)
    pairs = Counter((written(t)["dataset"]["limit"], written(t)["training"]["max_steps"]) for t in _trains(plan))
    # zipped, not crossed: 1,600 rows / 100 steps ... 11,200 rows / 700 steps, 40 runs each
    assert pairs == {(1600, 100): 40, (3200, 200): 40, (6400, 400): 40, (11200, 700): 40}
    for t in _trains(plan):
        cfg = written(t)
        # every run sees each of its rows once: steps x batch 16 / rows = 1 epoch
        assert cfg["training"]["max_steps"] * cfg["method"]["batch_size"] == cfg["dataset"]["limit"]
        assert cfg["axes"]["dataset.limit"] == cfg["dataset"]["limit"]
        assert cfg["axes"]["training.max_steps"] == cfg["training"]["max_steps"]
    for ev in (j for j in plan.jobs if j.stage == "eval" and written(j)["target"]["kind"] == "adapter"):
        assert written(ev)["checkpoints"] == ["final"]


# ---- model-size --------------------------------------------------------------------------------

SIZES = {"qwen2.5-0.5b": "0.5B", "qwen2.5-1.5b": "1.5B", "qwen2.5-3b": "3B", "qwen2.5-7b": "7B"}


def test_model_size_plans_four_qwen_sizes_with_their_own_templates():
    plan = _plan("model-size")
    # train: 4 models x 2 preferences x 2 methods x 5 seeds = 80; eval: 80 + 4 untrained models = 84;
    # judge: every eval has the two judged benchmarks at "final" = 84
    assert _stages(plan) == {"train": 80, "eval": 84, "judge": 84}
    _distinct_ids(plan)
    assert Counter(written(t)["model"]["name"] for t in _trains(plan)) == {m: 20 for m in SIZES}
    for t in _trains(plan):
        m = written(t)["model"]
        assert m["source"] == f"Qwen/Qwen2.5-{SIZES[m['name']]}-Instruct"
        assert m["template"] == "chat_template" and m["kind"] == "instruct"


@pytest.mark.parametrize("model, mem_gb, time_min", [
    # the overrides per size (train): 16 GB / 1 h, 32 GB / 1.5 h, 48 GB / 2.5 h, 64 GB / 4 h
    ("qwen2.5-0.5b", 16, 60), ("qwen2.5-1.5b", 32, 90), ("qwen2.5-3b", 48, 150), ("qwen2.5-7b", 64, 240)])
def test_model_size_scales_resources_per_size(model, mem_gb, time_min):
    plan = _plan("model-size")
    res = {(j.resources.mem_gb, j.resources.time_min, j.resources.gpus) for j in _trains(plan)
           if written(j)["model"]["name"] == model}
    assert res == {(mem_gb, time_min, 1)}


# ---- the tiny counterparts (sweeps/tiny/; run end to end in tests/e2e/test_studies.py) -----------

@pytest.mark.parametrize("name, stages", [
    # 2 SFT ranks x 2 alphas + 2 DPO ranks x 2 alphas = 8 runs, no benchmark
    ("hparam-search", {"train": 8}),
    # helpful, harmless, honest + their mixture = 4 runs; 3 merges of the 3 single-preference runs;
    # every run and merge evaluated = 7
    ("preferences-3", {"train": 4, "merge": 3, "eval": 7}),
    # {sft, dpo} x 2 (limit, steps) pairs = 4 runs, each evaluated
    ("quantity", {"train": 4, "eval": 4}),
    # 2 models x {sft, dpo} = 4 runs, each evaluated, + the 2 untrained models
    ("model-size", {"train": 4, "eval": 6}),
])
def test_tiny_counterparts_plan(name, stages):
    plan = load_plan(SWEEPS / "tiny" / f"{name}.yaml")
    assert _stages(plan) == stages
    assert plan.profile.executor == "local"
    _distinct_ids(plan)


@pytest.mark.parametrize("path", [f"{d}{n}.yaml" for d in ("", "tiny/")
                                  for n in ("hparam-search", "preferences-3", "quantity", "model-size")])
def test_every_compiled_config_loads_through_the_typed_contract(path):
    """What the jobs will read: each job's config.json parses strictly into its stage's typed config."""
    from alignkit.contract import parse

    plan = load_plan(SWEEPS / path, "template" if "/" not in path else None)
    for job in plan.jobs:
        typed = parse(written(job), f"{path}: {job.name}")
        assert typed == job.config, f"{job.name}: config.json does not read back as the compiled config"
        assert type(typed).__name__.lower().startswith(job.stage)
