"""collect with the eval choices of the plan: the untrained models beside the paper's "Original" rows,
benchmarks that run at fewer checkpoints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from alignkit.collect import collect
from tests.fixtures.synthetic_study import BENCH_METRICS, write_study


def _base_eval(root: Path, manifest: dict, model: str, value: float) -> None:
    """An untrained model's eval job as the compiler makes it (target kind base, checkpoint final)."""
    mcfg = next(j["config"]["model"] for j in manifest["jobs"] if j["config"]["axes"]["model"] == model)
    axes = {"model": model, "dataset": None, "preference": "original", "method": None, "peft": None, "seed": None}
    bench = {b: {"type": "lm_eval", "metric": m} for b, m in BENCH_METRICS.items()}
    cfg = {"stage": "eval", "axes": axes, "model": mcfg, "target": {"kind": "base"}, "checkpoints": ["final"],
           "benchmarks": bench}
    jid = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
    manifest["jobs"].append({"id": jid, "name": f"{model}/original/eval", "stage": "eval", "depends_on": [],
                             "config": cfg, "resources": {"gpus": 1, "nodes": 1}})
    d = root / "jobs" / jid
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(cfg))
    scores = {b: {m: value, f"{m}_stderr": 0.01, "n": 100} for b, m in BENCH_METRICS.items()}
    (d / "eval.json").write_text(json.dumps({"checkpoints": {"final": scores}, "provenance": {}}))
    (d / "DONE").write_text("1\n")


def test_untrained_models_sit_beside_the_papers_original_rows(tmp_path):
    root = tmp_path / "sweep"
    manifest = write_study(root, seeds=(0,), steps=(100,), max_steps=300, merges=False)
    _base_eval(root, manifest, "mistral-7b", 0.5731)
    _base_eval(root, manifest, "mistral-7b-instruct", 0.5412)
    (root / "manifest.json").write_text(json.dumps(manifest))
    collect(root, tmp_path / "out", formats=("md",), accounting=False)
    text = (tmp_path / "out" / "summary.md").read_text()
    table2 = text[text.index("Table 2"):]
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
            for line in table2.splitlines() if line.startswith("| Mistral")}
    # SFT MMLU: ours, then the paper's published "Original" number (Thakkar et al. Table 2)
    assert rows[("Mistral-7b", "original")][:2] == ["0.573", "0.590"]
    assert rows[("Mistral-7b-Ins", "original")][:2] == ["0.541", "0.535"]
    assert rows[("Mistral-7b", "original")][6:8] == ["0.573", "0.590"]  # the same row under DPO


def test_a_benchmark_at_fewer_checkpoints_leaves_no_hole_elsewhere(tmp_path):
    import csv

    root = tmp_path / "sweep"
    manifest = write_study(root, models=("mistral-7b",), preferences=("harmless",), methods=("sft",), seeds=(0,),
                           steps=(100,), max_steps=300, merges=False, benchmarks=("mmlu", "alpaca_eval"))
    ev = next(j for j in manifest["jobs"] if j["stage"] == "eval")
    ev["config"]["benchmarks"] = {n: dict(b, checkpoints=[100, "final"] if n == "mmlu" else ["final"])
                                  for n, b in ev["config"]["benchmarks"].items()}
    result = json.loads((root / "jobs" / ev["id"] / "eval.json").read_text())
    del result["checkpoints"]["100"]["alpaca_eval"]  # not generated at step 100
    (root / "jobs" / ev["id"] / "eval.json").write_text(json.dumps(result))
    (root / "manifest.json").write_text(json.dumps(manifest))
    collect(root, tmp_path / "out", formats=("csv",), accounting=False)
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["job_id"] == ev["id"]]
    assert sorted((r["checkpoint"], r["benchmark"], bool(r["value"])) for r in rows) == [
        ("100", "mmlu", True), ("final", "alpaca_eval", True), ("final", "mmlu", True)]
    del result["checkpoints"]["final"]["alpaca_eval"]  # a real hole still shows
    (root / "jobs" / ev["id"] / "eval.json").write_text(json.dumps(result))
    collect(root, tmp_path / "out", formats=("csv",), accounting=False)
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["job_id"] == ev["id"]]
    assert ("final", "alpaca_eval", False) in {(r["checkpoint"], r["benchmark"], bool(r["value"])) for r in rows}
