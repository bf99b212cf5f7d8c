"""`alignkit collect` on a synthetic sweep directory with corrupt, half-written and missing results."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.cli.main import main
from alignkit.collect import index as index_mod
from alignkit.collect import prune
from alignkit.collect.study import load_study
from tests.fixtures.synthetic_study import write_study
from alignkit.contract.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def _jobs(manifest, stage, **axes):
    return [j for j in manifest["jobs"] if j["stage"] == stage
            and all(j["config"]["axes"].get(k) == v for k, v in axes.items())]


@pytest.fixture()
def study(tmp_path):
    root = tmp_path / "sweep"
    manifest = write_study(root, seeds=(0, 1, 2), steps=(100, 200), max_steps=300)
    jobs = root / "jobs"
    broken = {}
    # a half-written eval.json (writer killed), a train_metrics.json that is not JSON, an eval.json of
    # the wrong shape, and an eval that never ran (its directory is missing)
    e_half = _jobs(manifest, "eval", model="mistral-7b", preference="harmless", method="sft", seed=2)[0]
    text = (jobs / e_half["id"] / "eval.json").read_text()
    (jobs / e_half["id"] / "eval.json").write_text(text[: len(text) // 2])
    (jobs / e_half["id"] / "DONE").unlink()
    broken["half"] = e_half
    t_bad = _jobs(manifest, "train", model="mistral-7b-instruct", preference="helpful", method="dpo", seed=0)[0]
    (jobs / t_bad["id"] / "train_metrics.json").write_text("{not json")
    broken["train"] = t_bad
    e_shape = _jobs(manifest, "eval", model="mistral-7b-instruct", preference="helpful", method="sft", seed=1)[0]
    (jobs / e_shape["id"] / "eval.json").write_text(json.dumps({"checkpoints": [1, 2]}))
    broken["shape"] = e_shape
    e_gone = _jobs(manifest, "eval", model="mistral-7b", preference="helpful", method="dpo", seed=1)[0]
    shutil.rmtree(jobs / e_gone["id"])
    broken["gone"] = e_gone
    return root, manifest, broken


def _collect(root: Path, out: Path, *extra: str, capsys) -> dict:
    rc = main(["collect", str(root), "--out", str(out), "--json", *extra])
    assert rc == 0
    return json.loads(capsys.readouterr().out)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tidy_table_values_axes_and_holes(study, tmp_path, capsys):
    root, manifest, broken = study
    digest = _collect(root, tmp_path / "out", "--format", "csv,parquet", capsys=capsys)
    rows = _csv(tmp_path / "out" / "results.csv")
    # every axis is a column
    for col in ("model", "paper_model", "dataset", "preference", "method", "peft", "seed", "step", "merge",
                "merge_method", "benchmark", "metric", "value", "stderr", "state", "wall_s", "gpu_hours",
                "tokens_per_s", "peak_mem_gb", "versions", "dataset_revision", "code_commit", "job_id"):
        assert col in rows[0], col
    # a value read back exactly, with its stderr and provenance
    ev = _jobs(manifest, "eval", model="mistral-7b-instruct", preference="harmless", method="dpo", seed=1)[0]
    result = json.loads((root / "jobs" / ev["id"] / "eval.json").read_text())
    want = result["checkpoints"]["200"]["bbh"]
    got = [r for r in rows if r["job_id"] == ev["id"] and r["checkpoint"] == "200" and r["benchmark"] == "bbh"]
    assert len(got) == 1 and float(got[0]["value"]) == want["exact_match"]
    assert float(got[0]["stderr"]) == want["exact_match_stderr"] and got[0]["metric"] == "exact_match"
    assert got[0]["step"] == "200" and got[0]["seed"] == "1" and got[0]["paper_model"] == "Mistral-7b-Ins"
    assert got[0]["state"] == "done" and got[0]["target_state"] == "done"
    assert got[0]["wall_source"] == "result file" and float(got[0]["gpu_hours"]) > 0
    assert got[0]["dataset_revision"] == "abc123" and got[0]["code_commit"] == "deadbeef"
    final = [r for r in rows if r["job_id"] == ev["id"] and r["checkpoint"] == "final"]
    assert {r["step"] for r in final} == {"300"} and len(final) == 5
    # merges carry their merge axis and method
    merged = [r for r in rows if r["merge"] == "dare-sft+dpo"]
    assert merged and {r["merge_method"] for r in merged} == {"dare_ties"} and merged[0]["target_kind"] == "merged"
    # the missing and corrupt evals are holes: rows without a value, with their state
    for key, state in (("gone", "missing"), ("half", "pending"), ("shape", "done")):
        holes = [r for r in rows if r["job_id"] == broken[key]["id"]]
        assert len(holes) == 3 * 5 and all(r["value"] == "" for r in holes), key
        assert {r["state"] for r in holes} == {state}
    # corrupt files are reported with their path, not fatal
    paths = {p["path"]: p["reason"] for p in digest["problems"]}
    assert "not valid JSON" in paths[str(root / "jobs" / broken["half"]["id"] / "eval.json")]
    assert "not valid JSON" in paths[str(root / "jobs" / broken["train"]["id"] / "train_metrics.json")]
    assert "checkpoints" in paths[str(root / "jobs" / broken["shape"]["id"] / "eval.json")]
    assert len(paths) == 3
    # parquet holds the same table with typed columns
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out" / "results.parquet")
    assert table.num_rows == len(rows) == digest["rows"]
    assert str(table.schema.field("value").type) == "double" and str(table.schema.field("seed").type) == "int64"


def test_summaries_mean_std_and_paper_side_by_side(study, tmp_path, capsys):
    root, manifest, broken = study
    _collect(root, tmp_path / "out", "--format", "csv,md,html", capsys=capsys)
    vals = []
    for seed in (0, 1, 2):
        ev = _jobs(manifest, "eval", model="mistral-7b", preference="harmless", method="dpo", seed=seed)[0]
        vals.append(json.loads((root / "jobs" / ev["id"] / "eval.json").read_text())["checkpoints"]["final"]["mmlu"]["acc"])
    summ = [r for r in _csv(tmp_path / "out" / "summary.csv")
            if (r["model"], r["preference"], r["method"], r["merge"], r["checkpoint"], r["benchmark"])
            == ("mistral-7b", "harmless", "dpo", "", "final", "mmlu")]
    assert len(summ) == 1 and summ[0]["n_seeds"] == "3"
    assert float(summ[0]["mean"]) == pytest.approx(statistics.mean(vals))
    assert float(summ[0]["std"]) == pytest.approx(statistics.stdev(vals))
    md = (tmp_path / "out" / "summary.md").read_text()
    cell = f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f} (n=3)"
    assert cell in md
    # Table 4 layout: ours beside the paper's 0.590 (Mistral-7b, harmless, DPO, MMLU, BeaverTails QLoRA)
    line = next(ln for ln in md.split("### SFT vs DPO — BeaverTails, QLoRA")[1].splitlines()
                if ln.startswith("| Mistral-7b | harmless"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = [c.strip() for c in md.split("### SFT vs DPO — BeaverTails, QLoRA")[1].splitlines()[4].strip("|").split("|")]
    assert cells[header.index("MMLU DPO")] == cell and cells[header.index("MMLU DPO paper")] == "0.590"
    # seed 2 of mistral-7b harmless SFT is half-written: that cell averages the 2 readable seeds
    assert "(n=2)" in md
    # a paper cell we do not have is shown as missing, the paper's number beside it
    assert "| LLaMA-1 | harmless | — | 0.321 |" in md
    # Table 3 layout: merges beside their inputs, the paper's merge numbers included
    t3 = md.split("### Merges vs their inputs — mistral-7b, BeaverTails, QLoRA (paper Table 3)")[1]
    assert "| DARE-SFT+DPO |" in t3 and "0.432" in t3 and "| Slerp-SFT |" in t3 and "| Harmless-SFT |" in t3
    html = (tmp_path / "out" / "summary.html").read_text()
    assert "<table>" in html and cell in html


def test_report_plots_and_index(study, tmp_path, capsys):
    root, manifest, broken = study
    digest = _collect(root, tmp_path / "out", "--metric", "mmlu", capsys=capsys)
    out = tmp_path / "out"
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert {"sft_vs_dpo_mmlu.png", "steps_mmlu.png", "merges_mmlu.png"} <= set(plots)
    assert all((out / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)
    report = (out / "report.html").read_text()
    # every figure is in the report (inline SVG, or linked when too large), PNG and PDF beside it for papers;
    # the findings' forest plots are drawn in the page itself (their PNG/PDF are for papers)
    shown = [p for p in plots if not p.startswith("forest_")]
    assert all(f"<figure class='plot' id='{p[:-4]}'>" in report for p in shown) and "data:image" not in report
    assert all((out / "plots" / p).with_suffix(".pdf").read_bytes()[:4] == b"%PDF" for p in plots)
    assert any(p.startswith("forest_") for p in plots) and "class='forests'" in report
    assert str(root / "jobs" / broken["half"]["id"] / "eval.json") in report and "Best checkpoint" in report
    # index: every step-N checkpoint, final adapter and merged model, with sizes
    idx = _csv(out / "checkpoints.csv")
    trains = _jobs(manifest, "train")
    merges = _jobs(manifest, "merge")
    assert len(idx) == len(trains) * 3 + len(merges)
    assert {r["kind"] for r in idx} == {"checkpoint", "adapter", "merged"}
    assert all(int(r["bytes"]) > 0 for r in idx)
    # best checkpoint per run by mmlu/acc is the arg-max over that run's evaluated checkpoints
    t = _jobs(manifest, "train", model="mistral-7b", preference="helpful", method="sft", seed=0)[0]
    ev = next(j for j in manifest["jobs"] if j["stage"] == "eval" and j["config"]["target"]["job"] == t["id"])
    res = json.loads((root / "jobs" / ev["id"] / "eval.json").read_text())["checkpoints"]
    want = max(res, key=lambda c: res[c]["mmlu"]["acc"])
    best = {b["job_id"]: b for b in digest["best"]}
    assert best[t["id"]]["checkpoint"] == want and best[t["id"]]["value"] == res[want]["mmlu"]["acc"]
    assert len(_csv(out / "best_checkpoints.csv")) == len(digest["best"])


def test_metric_choice_parsing():
    assert index_mod.MetricChoice.parse("mmlu") == index_mod.MetricChoice("mmlu", None, True)
    assert index_mod.MetricChoice.parse("red_instruct/asr:min") == index_mod.MetricChoice("red_instruct", "asr", False)
    assert index_mod.MetricChoice.parse("-bbh/exact_match").higher_is_better is False
    with pytest.raises(UserError):
        index_mod.MetricChoice.parse("mmlu/acc/x y")


def test_bad_input_is_one_line_exit_2(tmp_path, capsys, study):
    root, _, _ = study
    assert main(["collect", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0]
    assert main(["collect", str(root), "--out", str(tmp_path / "o"), "--metric", "nosuchbench"]) == 2
    assert "nosuchbench" in capsys.readouterr().err
    assert main(["collect", str(root), "--format", "csv,pdf"]) == 2
    (root / "manifest.json").write_text('{"jobs": [')
    assert main(["collect", str(root)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_prune_dry_run_then_yes(study, tmp_path, capsys):
    root, manifest, _ = study
    trains = _jobs(manifest, "train")
    unused = root / "jobs" / trains[0]["id"] / "checkpoints" / "step-250"  # no eval lists step 250
    unused.mkdir()
    (unused / "adapter_model.safetensors").write_bytes(b"\0" * 1000)
    running = root / "jobs" / trains[1]["id"]
    (running / "DONE").unlink()  # not finished: may still resume, so nothing of it goes
    cands = prune.candidates(load_study(root, accounting=False))
    paths = {c.path for c in cands}
    assert str(unused) in paths
    assert not any(p.startswith(str(running)) for p in paths)
    n_opt = sum(1 for c in cands if c.path.endswith("optimizer.pt"))
    assert n_opt == (len(trains) - 1) * 2
    total = sum(c.bytes for c in cands)
    assert main(["collect", str(root), "--prune"]) == 0
    assert "run again with --yes" in capsys.readouterr().out
    assert unused.exists()  # dry run deleted nothing
    assert main(["collect", str(root), "--prune", "--yes", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["freed_bytes"] == total == 1000 + n_opt * 512 and not rep["failed"]
    assert not unused.exists()
    assert not list((root / "jobs" / trains[0]["id"]).rglob("optimizer.pt"))
    assert (root / "jobs" / trains[0]["id"] / "checkpoints" / "step-100" / "adapter_model.safetensors").exists()
    assert (root / "jobs" / trains[0]["id"] / "adapter" / "adapter_model.safetensors").exists()
    assert list(running.rglob("optimizer.pt"))
    assert main(["collect", str(root), "--yes"]) == 2


def _no_bare_nan(text: str):
    def refuse(name):
        raise AssertionError(f"bare {name} in JSON output")
    return json.loads(text, parse_constant=refuse)


def test_nan_and_inf_metrics_are_problems_never_best(study, tmp_path, capsys):
    root, manifest, _ = study
    ev = _jobs(manifest, "eval", model="mistral-7b", preference="harmless", method="dpo", seed=0)[0]
    path = root / "jobs" / ev["id"] / "eval.json"
    data = json.loads(path.read_text())
    data["checkpoints"]["final"]["mmlu"]["acc"] = float("nan")  # json.dump writes NaN / Infinity, as a job's would
    data["checkpoints"]["100"]["mmlu"]["acc"] = float("inf")
    path.write_text(json.dumps(data))
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()
    tr = _jobs(manifest, "train", model="mistral-7b", preference="helpful", method="sft", seed=0)[0]
    tpath = root / "jobs" / tr["id"] / "train_metrics.json"
    tm = json.loads(tpath.read_text())
    tm["train_loss"] = float("nan")  # a diverged run
    tpath.write_text(json.dumps(tm))
    out = tmp_path / "out"
    assert main(["collect", str(root), "--out", str(out), "--json", "--format", "csv,md",
                 "--metric", "mmlu/acc"]) == 0
    digest = _no_bare_nan(capsys.readouterr().out)
    _no_bare_nan((out / "collect.json").read_text())
    problems = {(p["path"], p["reason"].split("'")[1]) for p in digest["problems"] if "finite" in p["reason"]}
    assert problems == {(str(path), "checkpoints.final.mmlu.acc"), (str(path), "checkpoints.100.mmlu.acc"),
                        (str(tpath), "train_loss")}
    rows = [r for r in _csv(out / "results.csv") if r["job_id"] == ev["id"] and r["benchmark"] == "mmlu"]
    by_ck = {r["checkpoint"]: r["value"] for r in rows}
    assert by_ck["final"] == "" and by_ck["100"] == "" and float(by_ck["200"]) > 0
    target = ev["config"]["target"]["job"]
    best = {b["job_id"]: b for b in digest["best"]}
    assert best[target]["checkpoint"] == "200"  # the only finite value of that run
    for f in ("results.csv", "summary.csv", "checkpoints.csv", "best_checkpoints.csv"):
        cells = {c.strip().lower() for r in csv.reader((out / f).open()) for c in r}
        assert not cells & {"nan", "inf", "-inf", "infinity"}, f
    md_cells = {c.strip().split(" ")[0].lower() for line in (out / "summary.md").read_text().splitlines()
                for c in line.split("|")}
    assert not md_cells & {"nan", "inf", "-inf"}


def test_login_side_imports_stay_light():
    code = ("import sys, alignkit.cli.collect, alignkit.collect, alignkit.collect.prune, alignkit.collect.index; "
            "print([m for m in sys.modules if m.split('.')[0] in "
            "('torch','pandas','pyarrow','matplotlib','numpy','transformers','jobs')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
