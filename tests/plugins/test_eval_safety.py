"""Loaders of the safety evals' real file formats, the "most severe" rule, CoU prompts, bad-input errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from jobs.errors import JobFailure
from alignkit.plugins.benchmarks import alpaca_eval_run as alpaca_eval
from alignkit.plugins.benchmarks import realtoxicity_run as realtoxicity
from alignkit.plugins.benchmarks import red_instruct_run as red_instruct
from tests.fixtures.eval_fixtures import SMOKE, TextTemplateTokenizer, bench_config

RTP = SMOKE / "realtoxicityprompts" / "prompts.jsonl"


def _rt(source) -> object:
    return bench_config("realtoxicity", source=str(source))


def _ae(source) -> object:
    return bench_config("alpaca_eval", source=str(source))


def test_most_severe_takes_highest_prompt_toxicity_skips_nulls_breaks_ties_by_filename():
    rows = realtoxicity.load_prompts(_rt(RTP), "b")
    assert len(rows) == 12 and set(rows[0]) >= {"filename", "begin", "end", "challenging", "prompt", "continuation"}
    chosen, n_null = realtoxicity.most_severe(rows, 4)
    assert n_null == 1
    tox = [r["prompt"]["toxicity"] for r in chosen]
    assert tox == sorted(tox, reverse=True)
    assert min(tox) >= max(r["prompt"]["toxicity"] for r in rows
                           if r not in chosen and r["prompt"]["toxicity"] is not None)
    tied = [r["filename"] for r in chosen if r["prompt"]["toxicity"] == 0.87]
    assert tied == sorted(tied) and len(tied) == 2
    everything, _ = realtoxicity.most_severe(rows, 1000)
    assert len(everything) == 11  # fewer rows than asked: all scored rows


def test_realtoxicity_source_may_be_the_folder(tmp_path):
    assert len(realtoxicity.load_prompts(_rt(RTP.parent), "b")) == 12
    with pytest.raises(JobFailure, match=f"b.source: {tmp_path} has no prompts.jsonl"):
        realtoxicity.load_prompts(_rt(tmp_path), "b")


@pytest.mark.parametrize("row, msg", [
    ({"filename": "f", "prompt": {"toxicity": 0.5}}, "row 2: field prompt.text missing"),
    ({"filename": "f", "prompt": {"text": "x", "toxicity": "high"}}, "row 2: field prompt.toxicity is 'high'"),
    ({"prompt": {"text": "x", "toxicity": 0.1}}, "row 2: field filename missing"),
])
def test_realtoxicity_bad_rows_name_file_row_and_field(tmp_path, row, msg):
    f = tmp_path / "prompts.jsonl"
    good = json.loads(RTP.read_text().splitlines()[0])
    f.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(JobFailure) as err:
        realtoxicity.load_prompts(_rt(f), "benchmarks.rt")
    assert str(err.value).startswith(f"benchmarks.rt: {f} ") and msg in str(err.value)
    f.write_text("{not json\n")
    with pytest.raises(JobFailure, match="line 1 is not valid JSON"):
        realtoxicity.load_prompts(_rt(f), "benchmarks.rt")


def test_red_instruct_reads_the_repo_layout_and_builds_cou_prompts():
    questions, template = red_instruct.load(bench_config("red_instruct", source=str(SMOKE / "red-instruct"), num_prompts=2), "b")
    assert questions == json.loads((SMOKE / "red-instruct/harmful_questions/dangerousqa.json").read_text())[:2]
    prompt = red_instruct.cou_prompt(template, "  How do I cheat?  ")
    assert "<question>" not in prompt and "Red-LM: How do I cheat?\n" in prompt
    assert prompt.rstrip().endswith("Base-LM:")


def test_red_instruct_bad_inputs(tmp_path):
    (tmp_path / "harmful_questions").mkdir()
    (tmp_path / "red_prompts").mkdir()
    (tmp_path / "harmful_questions/dangerousqa.json").write_text(json.dumps(["ok?", 3]))
    (tmp_path / "red_prompts/cou.txt").write_text("Red-LM: <question>\nBase-LM:")
    with pytest.raises(JobFailure, match="dangerousqa.json item 1 is not a non-empty string"):
        red_instruct.load(bench_config("red_instruct", source=str(tmp_path)), "b")
    (tmp_path / "harmful_questions/dangerousqa.json").write_text(json.dumps(["ok?"]))
    (tmp_path / "red_prompts/cou.txt").write_text("no placeholder")
    with pytest.raises(JobFailure, match="cou.txt has no <question> placeholder"):
        red_instruct.load(bench_config("red_instruct", source=str(tmp_path)), "b")


def test_clean_thoughts_and_verdicts():
    assert red_instruct.clean_thoughts("(Internal thought: I should comply.) Here is how.") == "Here is how."
    assert red_instruct.clean_thoughts("Plain answer") == "Plain answer"
    assert red_instruct.verdict("... [[B]]") == "harmful"
    assert red_instruct.verdict("[[A]]") == "not_harmful"
    assert red_instruct.verdict("[[A]] [[B]]") == "unparseable"


def test_alpaca_eval_reads_its_format_and_rejects_bad_items(tmp_path):
    folder = bench_config("alpaca_eval", source=str(SMOKE / "alpaca_eval"), reference="alpaca_eval.json")
    rows = alpaca_eval.load(folder, "b")
    assert len(rows) == 5 and set(rows[0]) == {"instruction", "output", "generator", "dataset"}
    assert len(alpaca_eval.load(replace(folder, num_prompts=2), "b")) == 2
    # the default reference is AlpacaEval 2's GPT-4 Turbo outputs, which this folder does not have
    with pytest.raises(JobFailure, match="alpaca_eval has no alpaca_eval_gpt4_baseline.json"):
        alpaca_eval.load(_ae(SMOKE / "alpaca_eval"), "b")
    f = tmp_path / "alpaca_eval.json"
    f.write_text(json.dumps([{"instruction": "x", "output": "y"}, {"instruction": "x"}]))
    with pytest.raises(JobFailure, match="item 1: field output missing"):
        alpaca_eval.load(_ae(f), "b")
    with pytest.raises(JobFailure, match="b.source: /nonexistent/x.json does not exist"):
        alpaca_eval.load(_ae("/nonexistent/x.json"), "b")


def test_unknown_hub_dataset_fails_offline_with_a_clear_reason(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JobFailure, match="cannot find alpaca_eval_gpt4_baseline.json of hub dataset no-one/nothing"):
        alpaca_eval.load(_ae("no-one/nothing"), "b")


class _FixedGenerator:
    """Continuations written by hand: a toxic one and a friendly one, whatever the prompt."""

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        return ["you are a stupid ugly idiot" if i % 2 == 0 else "have a lovely day" for i in range(len(prompts))]


def test_realtoxicity_records_the_continuation_only_score_beside_the_pair_score():
    from tests.fixtures.eval_fixtures import TOX

    scorer = realtoxicity.ToxicityScorer(str(TOX), "cpu", "b")
    cfg = bench_config("realtoxicity", source=str(SMOKE / "realtoxicityprompts" / "prompts.jsonl"), num_prompts=4,
                       classifier=str(TOX))
    entry, rows = realtoxicity.evaluate(_FixedGenerator(), None, scorer, cfg, "b")
    conts = [r["continuation"] for r in rows]
    # continuation alone: the classifier reads one sequence, as tokenizer(text) would
    alone = scorer.score(None, conts)
    assert [r["score_continuation"] for r in rows] == pytest.approx(alone)
    assert entry["toxicity_logit_continuation"] == pytest.approx(sum(alone) / len(alone))
    assert entry["toxicity_logit_continuation_stderr"] > 0
    # the pair score (the table's metric) is a different number: the prompt is part of what is scored
    pair = scorer.score([r["prompt"] for r in rows], conts)
    assert [r["score"] for r in rows] == pytest.approx(pair) and pair != pytest.approx(alone)
    assert entry["metric"] == "toxicity_logit" and entry["max_new_tokens"] == 20
    # the toxic continuation scores below the friendly one on its own
    assert alone[0] < 0 < alone[1]


class _Echo:
    def __init__(self) -> None:
        self.max_new = None

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        self.max_new = max_new_tokens
        return [f"  answer to {p}\n" for p in prompts]


def test_alpaca_eval_generation_uses_alpaca_evals_length_and_strips_outputs():
    gen = _Echo()
    cfg = _ae(SMOKE / "alpaca_eval" / "alpaca_eval.json")
    entry, rows = alpaca_eval.generate(gen, TextTemplateTokenizer(), cfg, "b", "m/job/final")
    assert gen.max_new == entry["max_new_tokens"] == 2048  # alpaca_eval models_configs: max_new_tokens 2048
    assert rows[0]["output"] == f"answer to {rows[0]['instruction']}"  # evaluate_from_model's is_strip_output
    assert entry["reference"] == {"source": cfg.source, "file": "alpaca_eval.json", "revision": None,
                                  "generator": "gpt4"}
    assert alpaca_eval.generate(gen, TextTemplateTokenizer(), replace(cfg, max_new_tokens=16), "b", "m")[0]["max_new_tokens"] == 16


def test_realtoxicity_without_a_classifier_is_a_one_line_failure():
    """The compiler names the default classifier in every config (realtoxicity.resolve); the job does
    not fall back to it a second time."""
    with pytest.raises(JobFailure, match=r"^benchmarks.rt.classifier: not set \(a compiled config names one, "
                                         r"by default nicholasKluge/ToxicityModel\)$"):
        realtoxicity.ToxicityScorer(None, "cpu", "benchmarks.rt")
