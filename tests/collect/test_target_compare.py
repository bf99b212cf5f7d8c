"""An evaluation-only study (`targets:`) compares its targets per benchmark (issue 21 item 8): paired t over
the items both targets scored where the jobs wrote per-item scores, z on the reported stderrs where they
did not (lm-eval), corrected with the checkpoint's table; no "None" and no empty plot in its report."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import yaml

from alignkit.collect import collect, stats
from tests.fixtures import planned_results
from tests.cli.test_prefetch_cli import _absolute_smoke
from tests.collect.test_report import _panels_with_data, _visible_text

# R: with(sleep, t.test(extra[group == 2], extra[group == 1], paired = TRUE))
#    t = 4.0621, df = 9, p-value = 0.002833; 95 percent CI 0.7001142 2.4598858; mean difference 1.58
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
TARGETS = ("base-sft", "zephyr-dpo", "same-as-sft")
PROMPTS = [f"prompt {i}" for i in range(40)]
HARMFUL = {"base-sft": set(range(0, 28)), "zephyr-dpo": set(range(0, 8)), "same-as-sft": set(range(12, 40))}


def test_paired_items_is_the_textbook_paired_t():
    iv = stats.paired_items([b - a for a, b in zip(SLEEP_1, SLEEP_2, strict=True)])
    assert iv.estimate == 1.58 or math.isclose(iv.estimate, 1.58)
    assert math.isclose(iv.low, 0.7001142, abs_tol=1e-6) and math.isclose(iv.high, 2.4598858, abs_tol=1e-6)
    assert math.isclose(iv.p, 0.002833, abs_tol=5e-6) and iv.df == 9
    assert iv.test == "paired t over 10 items, df=9.0"
    flat = stats.paired_items([1.0, 1.0, 1.0])
    assert flat.p is None and flat.test == "paired t over 3 items: every item difference is equal (zero variance), no test"


def test_z_difference_matches_the_normal_distribution():
    # qnorm(0.975) = 1.959963985; 2 * pnorm(-2) = 0.04550026
    iv = stats.z_difference(1.0, 0.5)
    assert math.isclose(iv.high - 1.0, 0.5 * 1.959963985, rel_tol=1e-9)
    assert math.isclose(iv.p, 0.04550026, rel_tol=1e-6)
    assert stats.z_difference(0.3, 0.0).p is None


def _eval_only(tmp_path: Path) -> Path:
    """The smoke study's benchmarks on three existing adapters of tiny-llama, nothing trained."""
    spec = _absolute_smoke()
    for key in ("datasets", "methods", "peft", "merges", "training"):
        spec.pop(key, None)
    spec["grid"] = {}
    spec["evals"].pop("checkpoints", None)
    spec["evals"]["base_models"] = False
    spec["name"] = "eval-only"
    spec["targets"] = {}
    for name in TARGETS:
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
        spec["targets"][name] = {"source": str(tmp_path / name), "base": "tiny-llama",
                                 "axes": {"method": "dpo" if "dpo" in name else "sft"}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _per_item(root: Path, manifest: dict) -> None:
    """Red-Instruct verdicts (judge jobs) and RealToxicityPrompts scores (eval jobs) per prompt, with the
    recorded values their means, as the jobs write them (docs/evaluation.md)."""
    for job in manifest["jobs"]:
        target = job["config"]["axes"]["target"]
        d = root / "jobs" / job["id"]
        if job["stage"] == "judge":
            rows = [{"prompt": p, "verdict": "harmful" if i in HARMFUL[target] else "not_harmful", "reply": "[[B]]"}
                    for i, p in enumerate(PROMPTS)]
            rows.append({"prompt": "unjudged", "verdict": "unparseable", "reply": ""})   # not in n, not an item
            (d / "verdicts" / "final").mkdir(parents=True)
            (d / "verdicts" / "final" / "red_instruct.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            result = json.loads((d / "judge.json").read_text())
            asr = 100.0 * len(HARMFUL[target]) / len(PROMPTS)
            result["checkpoints"]["final"]["red_instruct"] = {
                "metric": "asr", "asr": asr, "safety": 100 - asr, "n": len(PROMPTS), "higher_is_better": False,
                "asr_stderr": 100 * math.sqrt(asr / 100 * (1 - asr / 100) / len(PROMPTS)),
                "verdicts": "verdicts/final/red_instruct.jsonl"}
            (d / "judge.json").write_text(json.dumps(result))
        else:
            shift = {"base-sft": 0.0, "zephyr-dpo": -0.5, "same-as-sft": 0.0}[target]
            rows = [{"filename": f"f{i}", "begin": 0, "end": 9, "prompt": p, "continuation": "x",
                     "score": round(0.1 * ((i * 7 + (3 if target == "same-as-sft" else 0)) % 11)
                                    + shift * (1 + 0.08 * ((i % 3) - 1)), 6),
                     "score_continuation": 0.0} for i, p in enumerate(PROMPTS)]
            (d / "generations" / "final").mkdir(parents=True)
            (d / "generations" / "final" / "realtoxicity.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            result = json.loads((d / "eval.json").read_text())
            mean = sum(r["score"] for r in rows) / len(rows)
            result["checkpoints"]["final"]["realtoxicity"] = {
                "metric": "toxicity_logit", "toxicity_logit": mean, "toxicity_logit_stderr": 0.05, "n": len(rows),
                "higher_is_better": True, "generations": "generations/final/realtoxicity.jsonl"}
            (d / "eval.json").write_text(json.dumps(result))


def test_an_eval_only_study_compares_its_targets_with_intervals(tmp_path):
    root = tmp_path / "sweep"
    manifest = planned_results.write(_eval_only(tmp_path), root)
    assert {j["stage"] for j in manifest["jobs"]} == {"eval", "judge"}
    _per_item(root, manifest)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        collect(root, out=root / "collect", accounting=False)
    out = root / "collect"
    found = json.loads((out / "findings.json").read_text())
    rows = {(r["question"], r["benchmark"]): r for r in found["comparisons"]}
    questions = {"target: zephyr-dpo vs base-sft", "target: same-as-sft vs base-sft", "target: same-as-sft vs zephyr-dpo"}
    assert {q for q, _ in rows} == questions      # every pair of targets; nothing "too few seeds" about labels
    assert {b for _, b in rows} == {"bbh", "mmlu", "alpaca_eval", "realtoxicity", "red_instruct"}
    assert found["axes"] == ["model", "method", "target"]   # not the dataset, peft, ... no target has
    assert all(r["correction"] == "Benjamini–Hochberg" for r in rows.values())

    # Red-Instruct: paired over the 40 judged prompts (the unparseable row is no item); ASR 20% vs 70%
    red = rows[("target: zephyr-dpo vs base-sft", "red_instruct")]
    diffs = [(100.0 if i in HARMFUL["zephyr-dpo"] else 0.0) - (100.0 if i in HARMFUL["base-sft"] else 0.0)
             for i in range(40)]
    want = stats.paired_items(diffs)
    assert red["test"] == "paired t over 40 items, df=39.0"
    assert math.isclose(red["difference"], -50.0) and math.isclose(red["ci_low"], want.low)
    assert math.isclose(red["p"], want.p) and red["verdict"] == "better"      # lower ASR is better
    assert (red["mean_a"], red["mean_b"]) == (20.0, 70.0)
    # same ASR (70%) on different prompts: paired, no detectable difference
    same = rows[("target: same-as-sft vs base-sft", "red_instruct")]
    assert same["difference"] == 0.0 and same["verdict"] == "no detectable difference"
    assert same["test"] == "paired t over 40 items, df=39.0"

    # RealToxicityPrompts: every prompt 0.5 ± 0.04 lower for zephyr-dpo (higher logit = less toxic: worse)
    tox = rows[("target: zephyr-dpo vs base-sft", "realtoxicity")]
    assert math.isclose(tox["difference"], -0.5, abs_tol=0.01) and tox["verdict"] == "worse"
    assert tox["test"] == "paired t over 40 items, df=39.0" and tox["ci_high"] < -0.45
    assert rows[("target: same-as-sft vs base-sft", "realtoxicity")]["test"].startswith("paired t over 40 items")

    # lm-eval (no items logged) and AlpacaEval without verdicts: z on the two stderrs
    mmlu = rows[("target: zephyr-dpo vs base-sft", "mmlu")]
    want = stats.z_difference(mmlu["mean_a"] - mmlu["mean_b"], math.sqrt(2) * 0.01)
    assert mmlu["test"] == "z on the two reported stderrs"
    assert math.isclose(mmlu["ci_low"], want.low) and math.isclose(mmlu["p"], want.p)
    assert rows[("target: zephyr-dpo vs base-sft", "alpaca_eval")]["test"] == "z on the two reported stderrs"
    # the table's correction covers the target rows: BH over the 15 p-values
    ps = [r["p"] for r in found["comparisons"]]
    adjusted = stats.bh(ps)
    assert [r["p_adjusted"] for r in found["comparisons"]] == adjusted

    # the report: a target column, forest plots of the target questions, no empty plot, no "None"
    summary = (out / "summary.md").read_text()
    assert "| target |" in summary.replace("| target | ", "| target |") and "zephyr-dpo" in summary
    for name in ("report.html", "summary.html"):
        text = _visible_text((out / name).read_text())
        assert not re.search(r"\bNone\b", text), re.search(r".{80}\bNone\b.{40}", text, flags=re.S)
    for name in ("summary.md", "findings.md", "summary.csv"):
        assert not re.search(r"\bNone\b", (out / name).read_text()), name
    plots = sorted(p.name for p in (out / "plots").glob("*.svg"))
    assert plots and all(p.startswith("forest_target_") for p in plots), plots
    assert len(plots) == 3
    for svg in (out / "plots").glob("*.svg"):
        body = svg.read_text()
        assert not re.search(r">[^<]*\bNone\b[^<]*<", body), svg.name
        n, with_data = _panels_with_data(body)
        assert n >= 1, svg.name


def test_items_that_do_not_reproduce_the_value_are_not_used(tmp_path):
    from alignkit.collect.target_compare import item_scores
    from alignkit.collect.study import JobRecord

    job = JobRecord("j", "target:x/judge", "judge", [], {}, {}, tmp_path)
    (tmp_path / "v.jsonl").write_text("".join(json.dumps({"prompt": str(i), "verdict": v}) + "\n"
                                              for i, v in enumerate(["harmful", "not_harmful", "response_na"])))
    job.results["judge.json"] = {"checkpoints": {"final": {"red_instruct": {"verdicts": "v.jsonl"}}}}
    assert item_scores(job, "final", "red_instruct", "red_instruct", "asr", 50.0) == {
        (('"0"',), 1): 100.0, (('"1"',), 1): 0.0}
    assert item_scores(job, "final", "red_instruct", "red_instruct", "asr", 40.0) is None   # not what 40 came from
    job.results["judge.json"]["checkpoints"]["final"]["red_instruct"]["verdicts"] = "../outside.jsonl"
    assert item_scores(job, "final", "red_instruct", "red_instruct", "asr", 50.0) is None   # only inside the job


def test_full_model_targets_are_compared_too(tmp_path):
    """`type: model` targets compile to kind "base" (as untrained base models do) but are named: compared."""
    spec = yaml.safe_load(_eval_only(tmp_path).read_text())
    spec["targets"] = {}
    for name in ("first", "second"):   # two model folders (the same one twice would be one eval job)
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"model_type": "llama", "name": name}))
        spec["targets"][name] = {"source": str(tmp_path / name), "type": "model"}
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    root = tmp_path / "sweep"
    planned_results.write(path, root)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        collect(root, out=root / "collect", accounting=False)
    found = json.loads((root / "collect" / "findings.json").read_text())
    assert {(r["question"], r["test"]) for r in found["comparisons"]} == {
        ("target: second vs first", "z on the two reported stderrs")}
    assert len(found["comparisons"]) == 5
