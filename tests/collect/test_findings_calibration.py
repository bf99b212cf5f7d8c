"""Calibration of the findings (issue 25): simulated studies of the paper's full-size shape
(tests/fixtures/null_study.py: 320 runs, the mixture, the merges; eval at step 100 and final).

* Null: every value is noise around a constant per benchmark, so every verdict is false. Over
  N_NULL simulated studies × 2 checkpoints, each family's false-verdict rate stays at or below the
  nominal α = 0.05 plus TOLERANCE_SE binomial standard errors of that many trials: the comparisons
  table (a family per checkpoint: any false verdict counts once), each takeaway (any verdict other
  than not detectable), and the raw per-test rate before correction (each t test on its own).
* Planted: effects of 2-3 noise standard deviations are found in each of N_PLANTED studies.

The draws are seeded, so the figures are fixed; they are in docs/collect.md ("Calibration").
"""

from __future__ import annotations

import math

import pytest

from alignkit.collect import _configured_metrics, findings, stats, summary, tidy
from alignkit.collect.study import load_study
from tests.fixtures import null_study

N_NULL = 30          # simulated null studies (× 2 checkpoints = 60 families of each kind)
N_PLANTED = 4
TOLERANCE_SE = 2.0   # binomial standard errors above α allowed for the simulation's own noise
FALSE = {findings.BETTER, findings.WORSE, findings.HIGHER, findings.LOWER}
JUDGED = {"supported", "contradicted", "mixed"}


@pytest.fixture(scope="module")
def shape(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration") / "full"
    null_study.full_shape(root)
    study = load_study(root, accounting=False)
    rows = tidy.build_rows(study)
    return study, rows, summary.primary_metrics(_configured_metrics(study), rows)


def _ceiling(trials: int) -> float:
    return stats.ALPHA + TOLERANCE_SE * math.sqrt(stats.ALPHA * (1 - stats.ALPHA) / trials)


def test_null_studies_keep_every_family_at_its_nominal_rate(shape):
    study, rows, primary = shape
    tables = tables_false = raw_tests = raw_false = 0
    takeaway_false: dict[str, int] = {}
    for sim in range(N_NULL):
        final = findings.compute(study, null_study.redraw(rows, sim), primary, True)
        assert [f.checkpoint for f in final.earlier] == ["100"]   # item 5: every evaluated checkpoint
        for f in (final, *final.earlier):
            assert len(f.comparisons) >= 80 and len(f.takeaways) == 6
            tables += 1
            tables_false += any(c.verdict in FALSE for c in f.comparisons)
            ps = [c.interval.p for c in f.comparisons if c.interval.p is not None]
            raw_tests += len(ps)
            raw_false += sum(p < stats.ALPHA for p in ps)
            for t in f.takeaways:
                takeaway_false[t.claim] = takeaway_false.get(t.claim, 0) + (t.verdict in JUDGED)
    print(f"null: tables with a false verdict {tables_false}/{tables}; takeaways judged {takeaway_false}; "
          f"raw tests p<α {raw_false}/{raw_tests}")
    assert tables_false / tables <= _ceiling(tables), (tables_false, tables)
    for claim, n in takeaway_false.items():
        assert n / tables <= _ceiling(tables), (claim, n, tables)
    pooled = sum(takeaway_false.values())
    assert pooled / (6 * tables) <= _ceiling(6 * tables), pooled
    # each t test alone: at most α (its trials are correlated, so no tighter claim than the ceiling)
    assert raw_false / raw_tests <= _ceiling(tables * 6), (raw_false, raw_tests)


def _planted(row: dict, bench: str) -> float:
    """In noise sds, towards "better" (Red-Instruct's ASR: lower): DPO − SFT = 2.5 on instruct bases;
    harmless − helpful = 2 under DPO on the safety benchmarks; every merge 3 above its inputs."""
    sign = -1.0 if bench == "red_instruct" else 1.0
    if row.get("merge") is not None:
        return 3.0 * sign
    g = 0.0
    if row.get("method") == "dpo" and row.get("model") in ("vicuna-7b", "mistral-7b-instruct"):
        g += 2.5
    if row.get("method") == "dpo" and row.get("preference") == "harmless" and bench in ("realtoxicity", "red_instruct"):
        g += 2.0
    return g * sign


def test_planted_effects_of_two_to_three_sd_are_found(shape):
    study, rows, primary = shape
    for sim in range(N_PLANTED):
        f = findings.at_checkpoint(study, null_study.redraw(rows, 1000 + sim, _planted), primary, True)
        got = {t.claim: t.verdict for t in f.takeaways}
        assert got["DPO is better than SFT for instruction-tuned bases"] == "supported", sim
        assert got["Merging models aligned to different preferences beats the models merged"] == "supported", sim
        assert got["DPO aligns faithfully to the explicit preference (harmlessness)"] == "supported", sim
        inst = [c for c in f.comparisons if c.section == "method: dpo vs sft (instruct bases)"]
        assert len(inst) == 5 and {c.verdict for c in inst} == {findings.BETTER}, sim
        # (no "no verdict where nothing is planted" here: Benjamini–Hochberg bounds the false share
        # among a table's verdicts, so with many true effects a null row may pass; the null test above
        # is the calibration)



def test_merges_below_their_inputs_contradict_the_merging_takeaway(shape):
    """The other side of the intersection–union rule: some input significantly above its merge."""
    study, rows, primary = shape

    def below(row: dict, bench: str) -> float:
        return (3.0 if bench == "red_instruct" else -3.0) if row.get("merge") is not None else 0.0

    f = findings.at_checkpoint(study, null_study.redraw(rows, 7, below), primary, True)
    merging = next(t for t in f.takeaways if t.claim.startswith("Merging"))
    assert merging.verdict == "contradicted"
    assert {c.verdict for c in merging.evidence} == {findings.WORSE}
    assert all(c.correction == "Holm" and "Bonferroni" in c.interval.test for c in merging.evidence)
