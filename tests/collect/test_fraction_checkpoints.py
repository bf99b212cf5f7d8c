"""num_train_epochs with evals at a fraction of training (docs/training.md "Epochs"): collect shows the
fraction's result under the step the train job made of it, and --prune keeps that step's adapter."""

from __future__ import annotations

from pathlib import Path

from alignkit.collect import prune, tidy
from alignkit.collect.study import JobRecord, Study


def _study(tmp_path: Path) -> Study:
    train = JobRecord("tr", "r", "train", [], {"stage": "train", "axes": {}, "training": {"num_train_epochs": 1}},
                      {}, tmp_path / "tr", state="done",
                      results={"train_metrics.json": {"max_steps": 6, "fraction_steps": {"0.5": 3}}})
    ev = JobRecord("ev", "r/eval", "eval", ["tr"],
                   {"stage": "eval", "axes": {}, "target": {"job": "tr", "kind": "adapter"},
                    "checkpoints": [0.5, "final"], "benchmarks": {"mmlu": {"type": "lm_eval", "metric": "acc"}}},
                   {}, tmp_path / "ev", state="done",
                   results={"eval.json": {"checkpoints": {"0.5": {"mmlu": {"acc": 0.25}},
                                                          "final": {"mmlu": {"acc": 0.5}}}}})
    return Study(tmp_path, "s", {"tr": train, "ev": ev}, [], "none")


def test_a_fraction_shows_under_its_step(tmp_path):
    study = _study(tmp_path)
    rows = [r for r in tidy._eval_rows(study, study.jobs["ev"], []) if r["metric"] == "acc"]
    assert sorted((r["checkpoint"], r["step"], r["value"]) for r in rows) == [("3", 3, 0.25), ("final", 6, 0.5)]


def test_prune_keeps_the_fractions_step(tmp_path):
    assert prune._used_steps(_study(tmp_path)) == {"tr": {"3", "final"}}
