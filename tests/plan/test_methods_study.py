"""sweeps/methods.yaml (SFT, DPO, IPO, KTO, ORPO, SimPO with the paper's evaluation) plans the expected
jobs and dependencies, and its tiny counterpart sweeps/tiny/methods.yaml runs end to end on the
local executor (slow): every job finishes, every method trains and is evaluated like SFT/DPO."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from alignkit.plan.compiler import load_plan
from tests.fixtures.written import written

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["sft", "dpo", "ipo", "kto", "orpo", "simpo"]
TYPES = {"sft": "sft", "dpo": "dpo", "ipo": "dpo", "kto": "kto", "orpo": "orpo", "simpo": "cpo"}


def _check_shape(plan, runs: int):
    jobs = plan.by_id()
    stages = Counter(j.stage for j in plan.jobs)
    trains = [j for j in plan.jobs if j.stage == "train"]
    assert Counter(written(j)["axes"]["method"] for j in trains) == {m: runs for m in METHODS}
    assert {written(j)["axes"]["method"]: written(j)["method"]["type"] for j in trains} == TYPES
    for j in plan.jobs:
        if j.stage == "train":
            assert j.depends_on == ()
        elif j.stage == "eval":  # one per run (all its checkpoints, every benchmark) + the base model
            assert all(jobs[d].stage == "train" for d in j.depends_on) and len(j.depends_on) <= 1
        else:  # judge: its eval's generations
            assert j.stage == "judge" and [jobs[d].stage for d in j.depends_on] == ["eval"]
    assert sum(1 for j in plan.jobs if j.stage == "eval" and not j.depends_on) == 1  # the base model
    return stages


def test_methods_study_plans_six_methods_with_the_papers_evaluation():
    plan = load_plan(ROOT / "sweeps" / "methods.yaml")
    # 6 methods x 2 preferences x 3 seeds; one eval and one judge job per run and for the base model
    assert _check_shape(plan, runs=6) == {"train": 36, "eval": 37, "judge": 37}
    full = load_plan(ROOT / "sweeps" / "full.yaml")
    one = lambda p: next(j for j in p.jobs if j.stage == "eval" and j.depends_on)  # noqa: E731
    assert sorted(written(one(plan))["benchmarks"]) == sorted(written(one(full))["benchmarks"])
    cfg = {written(j)["axes"]["method"]: written(j)["method"] for j in plan.jobs if j.stage == "train"}
    assert cfg["ipo"]["loss_type"] == "ipo" and "loss_type" not in cfg["dpo"]
    # SimPO at the SimPO paper's Mistral-Instruct values: beta 2.5, gamma/beta 0.1 -> TRL's absolute gamma 0.25
    assert (cfg["simpo"]["loss_type"], cfg["simpo"]["cpo_alpha"], cfg["simpo"]["beta"]) == ("simpo", 0.0, 2.5)
    assert cfg["simpo"]["simpo_gamma"] / cfg["simpo"]["beta"] == pytest.approx(0.1)
    # the same preference pairs per step (a KTO row is one response of a pair): 16 pairs, 32 responses
    pairs = {m: c["batch_size"] // (2 if m == "kto" else 1) for m, c in cfg.items() if m != "sft"}
    assert set(pairs.values()) == {16}, pairs
    # each method's learning rate inside its paper's or TRL's docs' range (sources: comments in the YAML)
    ranges = {"kto": (5e-7, 5e-6), "simpo": (3e-7, 1e-6), "orpo": (5e-6, 5e-6), "dpo": (5e-5, 5e-5)}
    for m, (lo, hi) in ranges.items():
        assert lo <= cfg[m]["learning_rate"] <= hi, m
    # the paper's SFT and DPO runs are full.yaml's, unchanged
    fcfg = {written(j)["axes"]["method"]: written(j)["method"] for j in full.jobs if j.stage == "train"}
    assert cfg["sft"] == fcfg["sft"] and cfg["dpo"] == fcfg["dpo"]


def test_every_unstated_value_of_the_new_methods_is_marked():
    text = (ROOT / "sweeps" / "methods.yaml").read_text().split("\nmethods:\n", 1)[1].split("\npeft:", 1)[0]
    for block in text.split("\n  ")[1:]:
        name = block.split(":", 1)[0]
        if name in ("ipo", "kto", "orpo", "simpo"):
            for line in block.splitlines()[1:]:
                key = line.strip().split(":", 1)[0]
                if key not in ("type", "<<", "loss_type"):
                    assert "# not stated in the paper" in line, (name, line)


def test_tiny_counterpart_plans_the_same_shape():
    plan = load_plan(ROOT / "sweeps" / "tiny" / "methods.yaml")
    assert _check_shape(plan, runs=1) == {"train": 6, "eval": 7, "judge": 7}


@pytest.mark.slow
def test_tiny_methods_study_runs_on_the_local_executor(tmp_path):
    out = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "alignkit", "submit", str(ROOT / "sweeps" / "tiny" / "methods.yaml"),
                    "--executor", "local", "-o", str(out), "--skip-preflight"], check=True, env=env, cwd=ROOT,
                   capture_output=True, timeout=120)
    jobs = [p for p in (out / "jobs").iterdir() if p.is_dir()]
    assert len(jobs) == 20
    deadline = time.time() + 1500
    while time.time() < deadline and not all((j / "DONE").exists() or (j / "error.json").exists() for j in jobs):
        time.sleep(3)
    errors = {j.name: json.loads((j / "error.json").read_text())["reason"] for j in jobs if (j / "error.json").exists()}
    assert not errors, errors
    assert all((j / "DONE").exists() for j in jobs)
    seen = set()
    for j in jobs:
        cfg = json.loads((j / "config.json").read_text())
        if cfg["stage"] == "train":
            m = json.loads((j / "train_metrics.json").read_text())
            seen.add(cfg["axes"]["method"])
            assert m["method"] == TYPES[cfg["axes"]["method"]] and m["steps"] == 4
            assert m["final_loss"] < m["first_loss"], (cfg["axes"]["method"], m["loss_curve"])
        elif cfg["stage"] == "eval":
            assert (j / "eval.json").exists()
    assert seen == set(METHODS)
    got = subprocess.run([sys.executable, "-m", "alignkit", "collect", str(out)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-2000:]
