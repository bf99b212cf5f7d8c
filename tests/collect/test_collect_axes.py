"""Collect reads its axis columns from the manifest (issue 13, items 1 and 9): dotted axes
(`method.beta`, `method.lora.r`) in the tidy table, summaries, index, findings, plots and report;
any number of preferences and a 3-way merge; paper sections only for the paper's study."""

from __future__ import annotations

import csv
import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest

from alignkit.cli.main import main
from alignkit.collect import collect, tidy
from alignkit.collect.study import NAMED_AXES, load_study
from tests.fixtures.synthetic_study import write_study

BETAS = (0.01, 0.1, 0.5)
RANKS = (8, 16)


def planted(bench: str, axes: dict[str, Any], step: int, rng: random.Random, inputs: list[dict[str, Any]]) -> float:
    """mmlu-like: beta 0.1 best by 0.05 over 0.01 and 0.10 over 0.5; r=16 beats r=8 by 0.02; noise sd 0.002.
    A merge: the mean of its inputs + 0.01."""
    if inputs:
        return sum(planted(bench, a, step, rng, []) for a in inputs) / len(inputs) + 0.01
    beta = {0.01: -0.05, 0.1: 0.0, 0.5: -0.10}.get(axes.get("method.beta"), 0.0)
    r = 0.02 if axes.get("method.lora.r") == 16 else 0.0
    return round(0.5 + beta + r + rng.gauss(0, 0.002), 6)


@pytest.fixture(scope="module")
def beta_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("axes") / "beta-r"
    manifest = write_study(root, models=("tiny-llama",), datasets=("beavertails",), methods=("dpo",),
                           pefts=("lora",), seeds=(0, 1), steps=(), max_steps=50, benchmarks=("mmlu", "bbh"),
                           dotted={"method.beta": BETAS, "method.lora.r": RANKS}, value=planted,
                           checkpoint_files=False, paper_names=False)
    digest = collect(root, out=root / "c", formats=("csv", "parquet", "md", "html", "png"), accounting=False)
    return root, manifest, digest


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def test_manifest_axes_become_columns(beta_study):
    root, manifest, digest = beta_study
    assert manifest["axes"] == [*NAMED_AXES, "method.beta", "method.lora.r"]
    assert digest["axes"] == manifest["axes"]
    header, rows = _csv(root / "c" / "results.csv")
    assert header == list(tidy.columns(["method.beta", "method.lora.r"]))
    assert header.index("method.beta") == header.index("merge_method") + 1
    runs = [r for r in rows if r["stage"] == "eval" and r["target_kind"] == "adapter" and r["benchmark"] == "mmlu"]
    assert len(runs) == 2 * 3 * 2 * 2   # preferences × betas × ranks × seeds, final checkpoint only
    assert {(float(r["method.beta"]), int(r["method.lora.r"])) for r in runs} == {(b, k) for b in BETAS for k in RANKS}
    # the train rows carry them too, and a merge (whose axes are the named ones) takes its inputs' values
    assert {r["method.beta"] for r in rows if r["stage"] == "train"} == {"0.01", "0.1", "0.5"}
    merged = [r for r in rows if r["target_kind"] == "merged"]
    assert merged and all(r["method.beta"] and r["method.lora.r"] for r in merged)


def test_parquet_types_summary_and_index(beta_study):
    root, _, _ = beta_study
    import pyarrow.parquet as pq

    schema = pq.read_table(root / "c" / "results.parquet").schema
    assert str(schema.field("method.beta").type) == "double" and str(schema.field("method.lora.r").type) == "int64"
    header, rows = _csv(root / "c" / "summary.csv")
    assert "method.beta" in header and "method.lora.r" in header
    cells = [r for r in rows if r["benchmark"] == "mmlu" and not r["merge"]]
    # configurations are never pooled as if they were seeds: 12 cells of 2 seeds each
    assert len(cells) == 12 and {r["n_seeds"] for r in cells} == {"2"}
    best = max(cells, key=lambda r: float(r["mean"]))
    assert (best["method.beta"], best["method.lora.r"]) == ("0.1", "16")
    header, _ = _csv(root / "c" / "checkpoints.csv")
    assert header.index("method.beta") < header.index("state")


def test_findings_compare_along_dotted_axes(beta_study):
    root, _, _ = beta_study
    found = json.loads((root / "c" / "findings.json").read_text())
    assert found["axes"][-2:] == ["method.beta", "method.lora.r"]
    by_q = {(c["question"], c["benchmark"]): c for c in found["comparisons"]}
    # pairs in the spec's order, later value vs earlier
    assert [q for q, b in by_q if q.startswith("method.beta") and b == "mmlu"] == [
        "method.beta: 0.1 vs 0.01", "method.beta: 0.5 vs 0.01", "method.beta: 0.5 vs 0.1"]
    c = by_q[("method.beta: 0.1 vs 0.01", "mmlu")]
    assert c["verdict"] == "better" and math.isclose(c["difference"], 0.05, abs_tol=0.005)
    assert by_q[("method.beta: 0.5 vs 0.1", "mmlu")]["verdict"] == "worse"
    r = by_q[("method.lora.r: 16 vs 8", "mmlu")]
    assert r["verdict"] == "better" and math.isclose(r["difference"], 0.02, abs_tol=0.005)
    assert r["contexts"] == 2 * 3   # matched on preference × beta


def test_plots_and_report_show_the_swept_axes(beta_study):
    root, _, digest = beta_study
    plots = {Path(f).name for f in digest["files"] if f.endswith(".png")}
    assert {"axis_method.beta_mmlu.png", "axis_method.lora.r_mmlu.png", "axis_method.beta_bbh.png"} <= plots
    html = (root / "c" / "report.html").read_text()
    assert re.search(r"<th[^>]*>method\.beta</th>", html) and re.search(r"<th[^>]*>method\.lora\.r</th>", html)
    md = (root / "c" / "summary.md").read_text()
    assert "| model | dataset | peft | preference | method | merge | method.beta | method.lora.r |" in md
    # a custom study (tiny-llama): no paper numbers, no takeaways, no empty tables
    for text in (html, md, (root / "c" / "findings.md").read_text()):
        assert "None, None" not in text and "Table 2" not in text and not re.search(r"\bpaper\b", text)
    assert digest["paper_study"] is False and digest["selection"] is None


def test_old_manifest_falls_back_to_the_named_axes(tmp_path):
    root = tmp_path / "old"
    manifest = write_study(root, models=("tiny-llama",), seeds=(0,), steps=(), max_steps=20, merges=False,
                           benchmarks=("mmlu",), checkpoint_files=False, paper_names=False)
    assert "axes" not in manifest
    study = load_study(root, accounting=False)
    assert study.axes == list(NAMED_AXES) and tidy.extra_axes(study) == []
    collect(root, out=root / "c", formats=("csv",), accounting=False)
    assert _csv(root / "c" / "results.csv")[0] == list(tidy.COLUMNS)


def test_unusable_axis_name_is_one_line_exit_2(tmp_path, capsys):
    root = tmp_path / "bad"
    write_study(root, models=("tiny-llama",), seeds=(0,), steps=(), max_steps=20, merges=False,
                benchmarks=("mmlu",), checkpoint_files=False, manifest_axes=True)
    m = json.loads((root / "manifest.json").read_text())
    m["axes"] = ["model", "method.beta; rm -rf /"]
    (root / "manifest.json").write_text(json.dumps(m))
    assert main(["collect", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and "axes[1]" in err[0]
    assert not (tmp_path / "o").exists()   # nothing written


def test_three_preferences_and_a_three_way_merge(tmp_path):
    root = tmp_path / "three"
    manifest = write_study(root, models=("tiny-llama",), preferences=("harmless", "helpful", "honest"),
                           pefts=("lora",), seeds=(0, 1, 2), steps=(), max_steps=20, benchmarks=("mmlu",),
                           checkpoint_files=False, paper_names=False, manifest_axes=True)
    merges = [j for j in manifest["jobs"] if j["stage"] == "merge"]
    assert merges and all(len(j["config"]["inputs"]) == 3 for j in merges if j["config"]["axes"]["merge"] == "dare")
    collect(root, out=root / "c", formats=("csv", "md"), accounting=False)
    _, rows = _csv(root / "c" / "results.csv")
    assert {r["preference"] for r in rows if r["target_kind"] == "adapter"} == {"harmless", "helpful", "honest"}
    assert {r["preference"] for r in rows if r["target_kind"] == "merged"} == {"{harmless,helpful,honest}"}
    found = json.loads((root / "c" / "findings.json").read_text())
    qs = {c["question"] for c in found["comparisons"]}
    assert {"preference: helpful vs harmless", "preference: honest vs harmless", "preference: honest vs helpful"} <= qs
    three_way = [c for c in found["comparisons"] if c["question"] == "merge dare (SFT) vs its inputs"]
    assert {c["b"] for c in three_way} == {"mean of inputs", "harmless-sft", "helpful-sft", "honest-sft"}
    assert three_way[0]["seeds"] == 3
    md = (root / "c" / "summary.md").read_text()
    assert "None, None" not in md and "| honest |" in md


def test_paper_study_keeps_its_paper_sections(tmp_path):
    root = tmp_path / "paper"
    write_study(root, steps=(), max_steps=700, checkpoint_files=False, manifest_axes=True)  # Mistral, BeaverTails
    digest = collect(root, out=root / "c", formats=("md", "html"), accounting=False)
    md = (root / "c" / "summary.md").read_text()
    assert digest["paper_study"] is True and "(paper Table 4)" in md and "Table 2" in md
    assert "The paper's takeaways" in (root / "c" / "report.html").read_text()
    assert json.loads((root / "c" / "findings.json").read_text())["takeaways"]


def test_runs_without_dataset_or_peft_get_no_empty_paper_layout(tmp_path):
    """Adapters evaluated as targets carry no dataset/PEFT: they are in the overview, in no "None, None" table."""
    root = tmp_path / "targets"
    write_study(root, models=("tiny-llama",), datasets=(None,), pefts=(None,), methods=("dpo",), seeds=(0,),
                steps=(), max_steps=20, merges=False, benchmarks=("mmlu",), checkpoint_files=False,
                paper_names=False, manifest_axes=True)
    collect(root, out=root / "c", formats=("md", "html"), accounting=False)
    for name in ("summary.md", "report.html"):
        text = (root / "c" / name).read_text()
        assert "None" not in text and "SFT vs DPO" not in text, name
    assert "| tiny-llama |  |  | harmless | dpo |" in (root / "c" / "summary.md").read_text()
