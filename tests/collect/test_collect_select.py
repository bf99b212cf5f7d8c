"""Selection (issue 13, item 3): the manifest's `select:` → selection.csv and a report section.
Synthetic studies with PLANTED best configurations (the paper's rank/alpha search shape), and
the stated rules for ties, missing values and runs the search does not cover."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from alignkit.cli.main import main
from alignkit.collect import collect
from tests.fixtures.synthetic_study import write_study

SFT_R, DPO_R, ALPHA = (32, 64, 128), (8, 16, 32), (16, 32, 64)
# planted best (r, alpha) per (method, preference)
BEST = {("sft", "harmless"): (64, 32), ("sft", "helpful"): (64, 32),
        ("dpo", "harmless"): (16, 64), ("dpo", "helpful"): (32, 16)}


def distance(axes: dict[str, Any]) -> int:
    """Grid steps from the planted best: 0 at the best, 1 at its neighbours."""
    ranks = SFT_R if axes["method"] == "sft" else DPO_R
    br, ba = BEST[(axes["method"], axes["preference"])]
    return abs(ranks.index(axes["method.lora.r"]) - ranks.index(br)) + abs(ALPHA.index(axes["method.lora.alpha"])
                                                                          - ALPHA.index(ba))


def val_loss(axes: dict[str, Any], step: int, rng: random.Random) -> dict[str, float]:
    """0.01 per grid step from the best, falling over training; noise sd 0.0005 (≪ the 0.01 gaps)."""
    return {"loss": round(0.5 + 0.01 * distance(axes) + 0.1 * (1 - step / 300) + rng.gauss(0, 0.0005), 6)}


def mmlu(bench: str, axes: dict[str, Any], step: int, rng: random.Random, inputs: list) -> float:
    return round(0.6 - 0.01 * distance(axes) + rng.gauss(0, 0.0005), 6)


def search(root: Path, select: dict[str, Any]) -> dict[str, Any]:
    """hparam-search.yaml's shape: SFT r∈{32,64,128} × α∈{16,32,64}, DPO r∈{8,16,32} × α∈{16,32,64}."""
    blocks = tuple({"method": (m,), "preference": ("harmless", "helpful"), "method.lora.r": r,
                    "method.lora.alpha": ALPHA} for m, r in (("sft", SFT_R), ("dpo", DPO_R)))
    return write_study(root, models=("mistral-7b-instruct",), preferences=(), pefts=("qlora",), seeds=(0, 1),
                       steps=(100,), max_steps=300, benchmarks=("mmlu",), merges=False, checkpoint_files=False,
                       include=blocks, validation=val_loss, value=mmlu, select=select)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def hparam(tmp_path_factory):
    root = tmp_path_factory.mktemp("select") / "hparam"
    manifest = search(root, {"metric": "validation_loss", "goal": "min", "over": ["method.lora.r", "method.lora.alpha"],
                             "by": ["method", "preference"], "checkpoint": "final"})
    digest = collect(root, out=root / "c", formats=("csv", "md", "html"), accounting=False)
    return root, manifest, digest


def test_the_planted_best_is_chosen_per_group(hparam):
    root, manifest, digest = hparam
    assert sum(j["stage"] == "train" for j in manifest["jobs"]) == 2 * 2 * 9 * 2   # methods × prefs × grid × seeds
    rows = _rows(root / "c" / "selection.csv")
    assert list(rows[0])[:4] == ["method", "preference", "method.lora.r", "method.lora.alpha"]
    chosen = {(r["method"], r["preference"]): (int(r["method.lora.r"]), int(r["method.lora.alpha"])) for r in rows}
    assert chosen == BEST
    for r in rows:
        assert r["candidates"] == "9" and r["n"] == "2" and r["n_missing"] == "0" and r["note"] == ""
        assert abs(float(r["value"]) - 0.5) < 0.002   # the final validation loss at the best
        ru = dict(kv.split("=") for kv in r["runner_up"].split(", "))
        ax = {"method": r["method"], "preference": r["preference"], "method.lora.r": int(ru["method.lora.r"]),
              "method.lora.alpha": int(ru["method.lora.alpha"])}
        assert distance(ax) == 1 and float(r["runner_up_value"]) > float(r["value"])
    assert digest["selection"]["metric"] == "validation_loss" and len(digest["selection"]["groups"]) == 4


def test_selection_is_a_report_section(hparam):
    root, _, _ = hparam
    html = (root / "c" / "report.html").read_text()
    assert "<h2 id='selection'>Selection: min validation_loss over method.lora.r, method.lora.alpha per method, " \
           "preference</h2>" in html
    assert html.index("id='selection'") < html.index("id='results'")
    assert "Selection: min validation_loss" in (root / "c" / "summary.md").read_text()
    # the validation numbers are in the tidy table too
    assert any(r["metric"] == "validation_loss" for r in _rows(root / "c" / "results.csv") if r["stage"] == "train")


def _reselect(root: Path, **select: Any) -> list[dict[str, str]]:
    m = json.loads((root / "manifest.json").read_text())
    m["select"] = select
    (root / "manifest.json").write_text(json.dumps(m))
    collect(root, out=root / "c2", formats=("csv",), accounting=False)
    return _rows(root / "c2" / "selection.csv")


def test_benchmark_metric_and_intermediate_checkpoint(tmp_path):
    root = tmp_path / "s"
    search(root, None)
    rows = _reselect(root, metric="mmlu", goal="max", over=["method.lora.r", "method.lora.alpha"],
                     by=["method", "preference"], checkpoint="final")
    assert {(r["method"], r["preference"]): (int(r["method.lora.r"]), int(r["method.lora.alpha"])) for r in rows} == BEST
    assert {r["metric"] for r in rows} == {"mmlu/acc (checkpoint final)"}
    # fewer `by` axes: a candidate is averaged over the rest (both preferences agree for SFT)
    rows = _reselect(root, metric="validation_loss", goal="min", over=["method.lora.r", "method.lora.alpha"],
                     by=["method"], checkpoint=100)
    sft = next(r for r in rows if r["method"] == "sft")
    assert (sft["method.lora.r"], sft["method.lora.alpha"], sft["n"]) == ("64", "32", "4")
    assert abs(float(sft["value"]) - (0.5 + 0.1 * (1 - 100 / 300))) < 0.002   # the curve's point at step 100
    rows = _reselect(root, metric="validation_loss", goal="min", over=["method.lora.r"], by=[], checkpoint=150)
    assert len(rows) == 1 and rows[0]["value"] == "" and rows[0]["note"] == "no candidate has a value yet"


def flat(axes: dict[str, Any], step: int, rng: random.Random) -> dict[str, float]:
    """beta 0.1 and 0.5 tie exactly; 1.0 is worse. No noise."""
    return {"loss": 0.4 if axes.get("method.beta") == 1.0 else 0.3}


def test_ties_missing_values_and_runs_outside_the_search(tmp_path, capsys):
    root = tmp_path / "beta"
    manifest = write_study(root, models=("tiny-llama",), methods=("sft",), pefts=("lora",), seeds=(0, 1), steps=(),
                           max_steps=300, benchmarks=("mmlu",), merges=False, checkpoint_files=False,
                           preferences=("harmless",), paper_names=False, validation=flat,
                           include=({"method": ("dpo",), "preference": ("harmless",),
                                     "method.beta": (0.1, 0.5, 1.0)},),
                           select={"metric": "validation_loss", "goal": "min", "over": ["method.beta"], "by": []})
    out = root / "c"
    collect(root, out=out, formats=("csv",), accounting=False)
    (row,) = _rows(out / "selection.csv")
    assert (row["method.beta"], row["value"], row["n"], row["runner_up"]) == ("0.1", "0.3", "2", "method.beta=0.5")
    assert "tie with method.beta=0.5: the first in the spec's order is chosen" in row["note"]
    assert "2 run(s) without a value for method.beta are not candidates" in row["note"]   # the SFT runs

    def train(beta, seed):
        return next(j for j in manifest["jobs"] if j["stage"] == "train"
                    and j["config"]["axes"].get("method.beta") == beta and j["config"]["axes"]["seed"] == seed)

    (root / "jobs" / train(0.1, 1)["id"] / "train_metrics.json").unlink()
    collect(root, out=out, formats=("csv",), accounting=False)
    (row,) = _rows(out / "selection.csv")
    assert (row["method.beta"], row["n"], row["n_missing"]) == ("0.1", "1", "1")
    assert "1 of 2 runs of the chosen have no value" in row["note"]
    shutil.rmtree(root / "jobs" / train(0.1, 0)["id"])
    collect(root, out=out, formats=("csv",), accounting=False)
    (row,) = _rows(out / "selection.csv")
    assert (row["method.beta"], row["runner_up"], row["candidates"]) == ("0.5", "method.beta=1.0", "2")
    assert "1 candidate(s) without any value left out" in row["note"] and "tie" not in row["note"]


@pytest.mark.parametrize("select,key", [
    ({"metric": "validation_loss", "goal": "min", "over": ["method.gamma"]}, "select.over"),
    ({"metric": "validation_loss", "goal": "median", "over": ["method.beta"]}, "select.goal"),
    ({"metric": "nosuchbench/acc", "goal": "max", "over": ["method.beta"]}, "select.metric"),
    ({"metric": "validation_loss", "goal": "min", "over": ["method.beta"], "by": ["method.beta"]}, "select.by"),
    ({"metric": "validation_loss", "goal": "min", "over": ["method.beta"], "checkpoint": "last"}, "select.checkpoint"),
])
def test_bad_select_is_one_line_exit_2(tmp_path, capsys, select, key):
    root = tmp_path / "bad"
    write_study(root, models=("tiny-llama",), methods=("dpo",), pefts=("lora",), seeds=(0,), steps=(), max_steps=20,
                benchmarks=("mmlu",), merges=False, checkpoint_files=False, dotted={"method.beta": (0.1, 0.5)},
                select=select)
    assert main(["collect", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and f"'{key}'" in err[0], err
    assert not (tmp_path / "o" / "selection.csv").exists()


def test_validation_curves_reach_the_training_plots(hparam):
    from alignkit.collect import curves, tidy
    from alignkit.collect.study import load_study

    root, _, _ = hparam
    study = load_study(root, accounting=False)
    runs = curves.series(study)
    assert len(runs) == 72 and all([s for s, _ in r["points"]["validation_loss"]] == [100, 200, 300] for r in runs)
    best = next(r for r in runs if r["panel"][2] == "sft" and "method.lora.r=64" in r["line"]
                and "method.lora.alpha=32" in r["line"] and r["line"][0] == "harmless")
    assert abs(best["points"]["validation_loss"][-1][1] - 0.5) < 0.002
    table = curves.table(tidy.build_rows(study), ["method.lora.r", "method.lora.alpha"])
    assert "validation_loss" in table.columns and "method.lora.alpha" in table.columns


def _by_seed(axes: dict[str, Any], step: int, rng: random.Random) -> dict[str, float]:
    acc = {(0.1, 0): 0.60, (0.1, 1): 0.90, (0.5, 0): 0.70, (0.5, 1): 0.75}
    return {"loss": 0.5, "reward_accuracy": acc.get((axes.get("method.beta"), axes["seed"]), 0.5)}


def test_candidates_are_compared_on_the_runs_they_all_have(tmp_path):
    """β 0.1 wins on both seeds' mean (0.75 vs 0.725); when β 0.5 loses seed 1, comparing β 0.1's two
    seeds with β 0.5's one would still pick 0.1 (0.75 vs 0.70) on seed 1's luck; on seed 0, which both
    have, 0.5 is better (0.70 vs 0.60)."""
    root = tmp_path / "matched"
    manifest = write_study(root, models=("tiny-llama",), methods=("dpo",), pefts=("lora",), seeds=(0, 1), steps=(),
                           max_steps=300, benchmarks=("mmlu",), merges=False, checkpoint_files=False,
                           preferences=("harmless",), paper_names=False, validation=_by_seed,
                           dotted={"method.beta": (0.1, 0.5)},
                           select={"metric": "validation_reward_accuracy", "goal": "max", "over": ["method.beta"]})
    out = root / "c"
    collect(root, out=out, formats=("csv",), accounting=False)
    (row,) = _rows(out / "selection.csv")
    assert (row["method.beta"], row["n"]) == ("0.1", "2") and "compared on" not in row["note"]
    lost = next(j for j in manifest["jobs"] if j["stage"] == "train"
                and j["config"]["axes"]["method.beta"] == 0.5 and j["config"]["axes"]["seed"] == 1)
    (root / "jobs" / lost["id"] / "train_metrics.json").unlink()
    collect(root, out=out, formats=("csv",), accounting=False)
    (row,) = _rows(out / "selection.csv")
    assert (row["method.beta"], row["value"], row["n"], row["runner_up_value"]) == ("0.5", "0.7", "1", "0.6")
    assert "compared on the 1 run(s) every candidate has (1 other run(s) left out)" in row["note"]
