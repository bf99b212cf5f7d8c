"""Findings: the statistics against published numbers, and verdicts against effects planted in
synthetic studies (tests/fixtures/planted_study.py), including a planted "no detectable difference"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alignkit.collect import collect, findings, stats
from alignkit.collect.study import load_study
from tests.fixtures import planted_study

# R's `sleep` data (Cushny & Peebles 1905, Student 1908): extra sleep under two drugs, 10 patients.
SLEEP1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_t_quantiles_match_published_tables():
    # R: qt(0.975, c(1, 4, 9, 30)); qt(0.995, 10)
    for df, want in ((1, 12.706205), (4, 2.776445), (9, 2.262157), (30, 2.042272)):
        assert stats.t_quantile(0.975, df) == pytest.approx(want, abs=1e-6)
    assert stats.t_quantile(0.995, 10) == pytest.approx(3.169273, abs=1e-6)
    assert stats.t_quantile(0.025, 9) == pytest.approx(-2.262157, abs=1e-6)


def test_paired_t_matches_r_sleep_example():
    # R: t.test(extra ~ group, data = sleep, paired = TRUE): mean difference −1.58,
    # 95% CI −2.4598858 −0.7001142, df = 9 (here group 2 − group 1, so the signs flip)
    iv = stats.paired([[b - a for a, b in zip(SLEEP1, SLEEP2, strict=True)]])
    assert iv.estimate == pytest.approx(1.58)
    assert (iv.low, iv.high) == (pytest.approx(0.7001142, abs=1e-6), pytest.approx(2.4598858, abs=1e-6))
    assert iv.test == "paired t, df=9.0" and iv.excludes_zero


def test_two_contexts_give_welchs_interval():
    # R: t.test(extra ~ group, data = sleep) (Welch): t = −1.8608, df = 17.776,
    # 95% CI −3.3654832 0.2054832. Two contexts of one cell each, weights +1 and −1, average
    # (x̄1 − x̄2)/2 with variance (s1²/n1 + s2²/n2)/4: Welch's interval halved.
    iv = stats.paired([SLEEP1, [-y for y in SLEEP2]])
    assert 2 * iv.estimate == pytest.approx(-1.58)
    assert 2 * iv.low == pytest.approx(-3.3654832, abs=1e-6) and 2 * iv.high == pytest.approx(0.2054832, abs=1e-6)
    assert iv.test == "paired t, df=17.8" and not iv.excludes_zero


def test_welch_matches_r_sleep_example():
    # R: t.test(extra ~ group, data = sleep) (Welch): t = −1.8608, df = 17.776, p-value = 0.07939,
    # 95% CI −3.3654832 0.2054832 (group 1 − group 2)
    iv = stats.welch([[(1.0, SLEEP1), (-1.0, SLEEP2)]])
    assert iv.estimate == pytest.approx(-1.58)
    assert (iv.low, iv.high) == (pytest.approx(-3.3654832, abs=1e-6), pytest.approx(0.2054832, abs=1e-6))
    assert iv.df == pytest.approx(17.776, abs=1e-3) and iv.p == pytest.approx(0.07939, abs=1e-5)
    assert iv.test == "Welch t, df=17.8"
    assert stats.welch([[(1.0, [1.0]), (-1.0, [0.0, 1.0])]]).low is None   # one seed: no test


def test_paired_p_value_matches_r():
    # R: t.test(extra ~ group, data = sleep, paired = TRUE): t = −4.0621, df = 9, p-value = 0.002833
    iv = stats.paired([[b - a for a, b in zip(SLEEP1, SLEEP2, strict=True)]])
    assert iv.df == 9 and iv.p == pytest.approx(0.002833, abs=1e-6)


def test_zero_variance_is_no_test_and_no_verdict():
    """Every seed difference equal: no zero-width interval, no p-value, and the verdict says why."""
    iv = stats.paired([[0.5, 0.5, 0.5]])
    assert iv.low is None and iv.high is None and iv.p is None and "zero variance" in iv.test
    assert findings.verdict(iv, True, None) == findings.NO_VAR
    iv = stats.welch([[(1.0, [2.0, 2.0]), (-1.0, [1.0, 1.0])]])
    assert iv.low is None and "zero variance" in iv.test


def test_corrections_match_scipy_and_holms_definition():
    from scipy.stats import false_discovery_control

    ps = [0.01, 0.04, 0.03, 0.005, 0.2, 0.049, 0.5]
    assert stats.bh(ps) == pytest.approx(list(false_discovery_control(ps, method="bh")), abs=1e-12)
    # Holm (1979): sorted p_(i) × (m − i + 1), running maximum, capped at 1; R's p.adjust(p, "holm")
    # on c(0.01, 0.02, 0.03, 0.04, 0.05) gives 0.05 0.08 0.09 0.09 0.09
    assert stats.holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert stats.holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert stats.bh([None]) == [None]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted") / "full"
    planted_study.full_size(root, failed=("llama-7b/hh-rlhf/helpful/sft/lora/3",))
    digest = collect(root, out=root / "collect", formats=("csv", "md", "html"), accounting=False)
    return root, digest, json.loads((root / "collect" / "findings.json").read_text())


def _rows(found: dict, question: str) -> dict[str, dict]:
    rows = {c["benchmark"]: c for c in found["comparisons"] if c["question"] == question}
    assert rows, f"no comparison {question!r}: {sorted({c['question'] for c in found['comparisons']})}"
    return rows


BENCHES = {"mmlu", "bbh", "alpaca_eval", "realtoxicity", "red_instruct"}


def test_planted_effects_are_found(planted):
    root, digest, found = planted
    assert found["axes"] == ["model", "dataset", "preference", "method", "peft", "merge"]
    inst = _rows(found, "method: dpo vs sft (instruct bases)")
    pre = _rows(found, "method: dpo vs sft (pretrained bases)")
    assert set(inst) == BENCHES
    assert {c["verdict"] for c in inst.values()} == {"better"}
    assert {c["verdict"] for c in pre.values()} == {"worse"}
    # direction: Red-Instruct ASR is lower-is-better; DPO lowers it on instruct bases, which is "better"
    assert inst["red_instruct"]["higher_is_better"] is False and inst["red_instruct"]["difference"] < 0
    assert inst["mmlu"]["difference"] > 0 and inst["mmlu"]["test"].startswith("paired t")
    # planted 0.03 (instruct, averaged over HH-RLHF's +0.05 and BeaverTails' +0.01) × MMLU's scale 0.1
    assert inst["mmlu"]["ci_low"] < 0.003 < inst["mmlu"]["ci_high"]
    assert {c["verdict"] for c in _rows(found, "dataset: beavertails vs hh-rlhf (method sft)").values()} == {"better"}
    assert {c["verdict"] for c in _rows(found, "model: mistral-7b vs llama-7b").values()} == {"better"}
    # each merge vs each of its inputs (never "the best input" picked on the same seeds)
    merges = [c for c in found["comparisons"] if c["question"].startswith("merge ") and c["b"] != "mean of inputs"]
    assert merges and {c["verdict"] for c in merges} == {"better"}
    assert {c["b"] for c in merges} == {"harmless-sft", "helpful-sft", "harmless-dpo", "helpful-dpo"}
    # every row carries its test's p, the corrected p and the correction's name
    assert all(c["correction"] == "Benjamini–Hochberg" and c["p_adjusted"] >= c["p"] for c in found["comparisons"]
               if c["p"] is not None)
    assert found["corrections"] == {"comparisons": "Benjamini–Hochberg", "takeaways": "Holm"}


def test_planted_no_difference_is_no_detectable_difference(planted):
    _, _, found = planted
    for question in ("peft: qlora vs lora", "dataset: beavertails vs hh-rlhf (method dpo)"):
        rows = _rows(found, question)
        assert set(rows) == BENCHES
        assert {c["verdict"] for c in rows.values()} == {"no detectable difference"}, question
        assert all(c["ci_low"] < 0 < c["ci_high"] for c in rows.values())


def test_paper_takeaways_in_the_planted_study(planted):
    _, digest, found = planted
    assert digest["paper_study"] is True
    got = {t["claim"]: t["verdict"] for t in found["takeaways"]}
    assert got == {
        "DPO is better than SFT for instruction-tuned bases": "supported",
        "SFT is better than DPO for pre-trained bases": "supported",
        "BeaverTails helps more for SFT than for DPO": "supported",
        "Mixing preferences degrades performance": "supported",
        "Merging models aligned to different preferences beats the models merged": "supported",
        "DPO aligns faithfully to the explicit preference (harmlessness)": "supported",
    }
    faithful = next(t for t in found["takeaways"] if "faithfully" in t["claim"])
    assert {c["benchmark"] for c in faithful["evidence"]} == {"realtoxicity", "red_instruct"}


def test_findings_files_and_report_order(planted):
    root, digest, found = planted
    md = (root / "collect" / "findings.md").read_text()
    assert md.startswith("# full: findings") and "## The paper's takeaways" in md
    # item 5: the same findings, corrected the same way, at the evaluated intermediate step 100
    assert "## At checkpoint 100" in md and "### The paper's takeaways" in md
    at100 = found["checkpoints"]["100"]
    assert at100["checkpoint"] == "100" and at100["comparisons"] and len(at100["takeaways"]) == 6
    assert {c["correction"] for c in at100["comparisons"]} == {"Benjamini–Hochberg"}
    assert {c["correction"] for t in at100["takeaways"] for c in t["evidence"]} == {"Holm"}
    page = (root / "collect" / "report.html").read_text()
    assert page.index("id='findings'") < page.index("id='failures'") < page.index("id='results'")
    assert "id='findings-checkpoints'" in page and "Benjamini–Hochberg" in page and "Holm" in page
    # the failed train job with its reason (error.json), and the evals it blocked show as missing
    assert "CUDA out of memory" in page and "llama-7b/hh-rlhf/helpful/sft/lora/3" in page
    assert digest["jobs"]["eval"]["missing"] == 1
    assert "findings" in json.dumps(digest["files"])


def test_unpaired_seeds_use_welchs_t(tmp_path):
    root = tmp_path / "unpaired"
    # HH-RLHF: the planted DPO − SFT is +0.05 on the instruct base (5 noise sd), no dataset effect
    planted_study.write_study(root, models=("mistral-7b", "mistral-7b-instruct"), datasets=("hh-rlhf",),
                              methods=("sft",), seeds=(0, 1, 2, 3, 4), steps=(), max_steps=700, merges=False, checkpoint_files=False,
                              value=planted_study.value,
                              include=({"method": ("dpo",), "preference": ("harmless", "helpful"),
                                        "seed": (5, 6, 7, 8, 9)},))
    study = load_study(root, accounting=False)
    from alignkit.collect import _configured_metrics, summary, tidy

    rows = tidy.build_rows(study)
    primary = summary.primary_metrics(_configured_metrics(study), rows)
    first = findings.compute(study, rows, primary, True)
    again = findings.compute(study, rows, primary, True)
    inst = [c for c in first.comparisons if c.section == "method: dpo vs sft (instruct bases)"]
    assert len(inst) == 5 and all(c.interval.test.startswith("Welch t, df=") for c in inst)
    assert {c.verdict for c in inst} == {"better"}
    assert [c.as_dict() for c in first.comparisons] == [c.as_dict() for c in again.comparisons]


def test_custom_study_gets_no_paper_sections(tmp_path):
    root = tmp_path / "smoke"
    planted_study.smoke_shaped(root)
    digest = collect(root, out=root / "collect", formats=("md", "html"), accounting=False)
    found = json.loads((root / "collect" / "findings.json").read_text())
    assert digest["paper_study"] is False and found["takeaways"] is None
    assert {c["question"] for c in found["comparisons"]} >= {"method: dpo vs sft", "peft: qlora vs lora",
                                                             "preference: harmless vs helpful"}
    for name in ("summary.md", "report.html", "findings.md"):
        text = (root / "collect" / name).read_text()
        assert "None, None" not in text and "Table 2" not in text and not re.search(r"\bpaper\b", text), name
    # single-valued axes (model, dataset) are not compared
    assert not any(c["question"].startswith(("model:", "dataset:")) for c in found["comparisons"])


def test_axes_come_from_the_manifest(tmp_path):
    """Three values of an axis give all three pairs, in the spec's (manifest's) order."""
    root = tmp_path / "three"
    planted_study.write_study(root, models=("llama-7b", "mistral-7b", "vicuna-7b"), datasets=("beavertails",),
                              pefts=("qlora",), steps=(), max_steps=700, merges=False, checkpoint_files=False,
                              value=planted_study.value)
    digest = collect(root, out=root / "c", formats=("md",), accounting=False)
    found = json.loads((root / "c" / "findings.json").read_text())
    assert digest["findings"]
    qs = [c["question"] for c in found["comparisons"] if c["question"].startswith("model:")]
    assert list(dict.fromkeys(qs)) == ["model: mistral-7b vs llama-7b", "model: vicuna-7b vs llama-7b",
                                       "model: vicuna-7b vs mistral-7b"]


def test_partial_paper_study_shows_only_its_own_paper_tables(tmp_path):
    root = tmp_path / "partial"
    planted_study.write_study(root, steps=(), max_steps=700, checkpoint_files=False)   # Mistral, BeaverTails, QLoRA
    collect(root, out=root / "c", formats=("md",), accounting=False)
    md = (root / "c" / "summary.md").read_text()
    assert "SFT vs DPO — BeaverTails, QLoRA (paper Table 4)" in md and "Table 2" in md
    assert "HH-RLHF" not in md and "None, None" not in md and "LoRA (paper Table 5)" not in md
    assert Path(root / "c" / "findings.md").exists()
