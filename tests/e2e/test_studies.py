"""The shipped studies' tiny counterparts (sweeps/tiny/) end to end on the local executor:
`alignkit submit --executor local` -> every job COMPLETED -> `alignkit collect` shows the swept
columns (and, for the rank/alpha search, the selection). Each is a few tiny runs of a few steps;
the sweeps they stand for are planned and checked in tests/plan/test_studies_plan.py."""

from __future__ import annotations

import csv
import json

import pytest

from tests.e2e import studies

pytestmark = [pytest.mark.slow]


def test_tiny_model_size(sweep):
    small = studies.build_one_layer(sweep / "tiny-llama-1layer")
    templates = {json.loads((d / "tokenizer_config.json").read_text()).get("chat_template")
                 or (d / "chat_template.jinja").read_text() for d in (studies.ROOT / "assets" / "tiny-llama", small)}
    assert len(templates) == 2  # each size has a chat template of its own (template: chat_template uses it)
    spec = studies.copy_spec("model-size", sweep)
    sd, jobs = studies.run(spec)
    # 2 models x {sft, dpo} = 4 runs, each evaluated, + the 2 untrained models
    assert sorted(j.stage for j in jobs).count("train") == 4 and len(jobs) == 4 + 4 + 2
    rows, _ = studies.collect(sd.root)
    mmlu = [r for r in rows if r["benchmark"] == "mmlu" and r["value"]]
    assert {(r["model"], r["method"] or "original") for r in mmlu} == {
        (m, k) for m in ("tiny-2layer", "tiny-1layer") for k in ("sft", "dpo", "original")}
    # each size kept its own resources (the override per model)
    by_name = {j["name"]: j for j in studies.manifest(sd.root)["jobs"]}
    mem = {n.split("/")[0]: j["resources"]["mem_gb"] for n, j in by_name.items() if j["stage"] == "train"}
    assert mem == {"tiny-2layer": 3, "tiny-1layer": 2}


def test_tiny_quantity(sweep):
    spec = studies.copy_spec("quantity", sweep)
    sd, jobs = studies.run(spec)
    # {sft, dpo} x 2 (limit, steps) pairs = 4 runs, each evaluated
    assert sorted(j.stage for j in jobs) == ["eval"] * 4 + ["train"] * 4
    assert studies.manifest(sd.root)["axes"] == ["model", "dataset", "preference", "method", "peft", "seed",
                                                 "dataset.limit", "training.max_steps"]
    rows, _ = studies.collect(sd.root)
    assert {"dataset.limit", "training.max_steps"} <= set(rows[0])
    mmlu = {(r["method"], r["dataset.limit"], r["training.max_steps"]) for r in rows
            if r["benchmark"] == "mmlu" and r["value"]}
    # zipped, not crossed: 16 rows / 2 steps and 32 rows / 4 steps (one epoch each at batch 8)
    assert mmlu == {(m, lim, steps) for m in ("sft", "dpo") for lim, steps in (("16", "2"), ("32", "4"))}
    for j in jobs:
        if j.stage == "train":
            metrics = json.loads((sd.job(j.id) / "train_metrics.json").read_text())
            cfg = json.loads((sd.job(j.id) / "config.json").read_text())
            assert metrics["loss_curve"][-1]["step"] == cfg["training"]["max_steps"]
            assert cfg["training"]["max_steps"] * cfg["method"]["batch_size"] == cfg["dataset"]["limit"]


def test_tiny_hparam_search_selects_per_method(sweep):
    spec = studies.copy_spec("hparam-search", sweep)
    sd, jobs = studies.run(spec)
    # SFT r in {4, 8} x alpha in {8, 16} + DPO r in {2, 4} x alpha in {8, 16} = 8 runs, no benchmark
    assert [j.stage for j in jobs] == ["train"] * 8
    rows, out = studies.collect(sd.root)
    assert {"method.lora.r", "method.lora.alpha"} <= set(rows[0])
    # validation logged at steps 2 and 4 (eval_steps 2, max_steps 4) on the held-out test split
    losses = {}
    for j in jobs:
        cfg = json.loads((sd.job(j.id) / "config.json").read_text())
        val = json.loads((sd.job(j.id) / "train_metrics.json").read_text())["validation"]
        assert [p["step"] for p in val["curve"]] == [2, 4] and val["final"] == val["curve"][-1]
        if cfg["method"]["type"] == "dpo":
            assert "reward_accuracy" in val["final"]
        key = (cfg["method"]["type"], cfg["method"]["lora"]["r"], cfg["method"]["lora"]["alpha"])
        losses[key] = val["final"]["loss"]
    with open(out / "selection.csv", newline="") as f:
        chosen = {r["method"]: r for r in csv.DictReader(f)}
    assert set(chosen) == {"sft", "dpo"}
    for method, row in chosen.items():
        # the choice is the setting of the lowest final validation loss (one seed: the run's own loss)
        mine = {k[1:]: v for k, v in losses.items() if k[0] == method}
        best = min(mine, key=mine.get)
        assert (int(row["method.lora.r"]), int(row["method.lora.alpha"])) == best, (row, mine)
        assert float(row["value"]) == pytest.approx(mine[best])
        assert row["metric"].startswith("validation_loss") and row["goal"] == "min" and row["n"] == "1"
        assert row["candidates"] == "4" and row["runner_up"]  # 2 ranks x 2 alphas per method
    # and the summary (the report's tables) has the selection section
    assert "Selection: min validation_loss over method.lora.r, method.lora.alpha per method" in \
        (out / "summary.md").read_text()


def test_tiny_preferences_3_mixes_and_merges_three_ways(sweep):
    spec = studies.copy_spec("preferences-3", sweep)
    sd, jobs = studies.run(spec, timeout_s=420)
    # 4 runs (helpful, harmless, honest, the 3-way mixture) + 3 merges (dare3, ties3, linear3),
    # each evaluated: 4 + 3 + 7 = 14 jobs
    assert sorted(j.stage for j in jobs) == ["eval"] * 7 + ["merge"] * 3 + ["train"] * 4
    rows, _ = studies.collect(sd.root)
    mmlu = [r for r in rows if r["benchmark"] == "mmlu" and r["value"]]
    assert {r["preference"] for r in mmlu if not r["merge"]} == {"helpful", "harmless", "honest",
                                                                 "harmless+helpful+honest"}
    assert {r["merge"] for r in mmlu if r["merge"]} == {"dare3", "ties3", "linear3"}
    # the honest run read its own file: 12 pairs, none dropped
    honest = next(j for j in jobs if j.stage == "train" and "/honest/" in j.name)
    metrics = json.loads((sd.job(honest.id) / "train_metrics.json").read_text())
    assert metrics["data"]["total"] == 12, metrics["data"]
    assert [p["source"].split("/")[-1].split(" ")[0] for p in metrics["data"]["parts"]] == ["honest.jsonl"]
