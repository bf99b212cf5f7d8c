"""Loaders of the safety evals' real file formats, the "most severe" rule, CoU prompts, bad-input errors."""

from __future__ import annotations

import json

import pytest

from jobs.errors import JobFailure
from jobs.safety import alpaca_eval, realtoxicity, red_instruct
from tests.unit.eval_fixtures import SMOKE

RTP = SMOKE / "realtoxicityprompts" / "prompts.jsonl"


def test_most_severe_takes_highest_prompt_toxicity_skips_nulls_breaks_ties_by_filename():
    rows = realtoxicity.load_prompts({"source": str(RTP)}, "b")
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
    assert len(realtoxicity.load_prompts({"source": str(RTP.parent)}, "b")) == 12
    with pytest.raises(JobFailure, match=f"b.source: {tmp_path} has no prompts.jsonl"):
        realtoxicity.load_prompts({"source": str(tmp_path)}, "b")


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
        realtoxicity.load_prompts({"source": str(f)}, "benchmarks.rt")
    assert str(err.value).startswith(f"benchmarks.rt: {f} ") and msg in str(err.value)
    f.write_text("{not json\n")
    with pytest.raises(JobFailure, match="line 1 is not valid JSON"):
        realtoxicity.load_prompts({"source": str(f)}, "benchmarks.rt")


def test_red_instruct_reads_the_repo_layout_and_builds_cou_prompts():
    questions, template = red_instruct.load({"source": str(SMOKE / "red-instruct"), "num_prompts": 2}, "b")
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
        red_instruct.load({"source": str(tmp_path)}, "b")
    (tmp_path / "harmful_questions/dangerousqa.json").write_text(json.dumps(["ok?"]))
    (tmp_path / "red_prompts/cou.txt").write_text("no placeholder")
    with pytest.raises(JobFailure, match="cou.txt has no <question> placeholder"):
        red_instruct.load({"source": str(tmp_path)}, "b")


def test_clean_thoughts_and_verdicts():
    assert red_instruct.clean_thoughts("(Internal thought: I should comply.) Here is how.") == "Here is how."
    assert red_instruct.clean_thoughts("Plain answer") == "Plain answer"
    assert red_instruct.verdict("... [[B]]") == "harmful"
    assert red_instruct.verdict("[[A]]") == "not_harmful"
    assert red_instruct.verdict("[[A]] [[B]]") == "unparseable"
    assert alpaca_eval.verdict("so [[2]]") == "2" and alpaca_eval.verdict("none") is None


def test_alpaca_eval_reads_its_format_and_rejects_bad_items(tmp_path):
    rows = alpaca_eval.load({"source": str(SMOKE / "alpaca_eval")}, "b")
    assert len(rows) == 5 and set(rows[0]) == {"instruction", "output", "generator", "dataset"}
    assert len(alpaca_eval.load({"source": str(SMOKE / "alpaca_eval"), "num_prompts": 2}, "b")) == 2
    f = tmp_path / "alpaca_eval.json"
    f.write_text(json.dumps([{"instruction": "x", "output": "y"}, {"instruction": "x"}]))
    with pytest.raises(JobFailure, match="item 1: field output missing"):
        alpaca_eval.load({"source": str(f)}, "b")
    with pytest.raises(JobFailure, match="b.source: /nonexistent/x.json does not exist"):
        alpaca_eval.load({"source": "/nonexistent/x.json"}, "b")


def test_unknown_hub_dataset_fails_offline_with_a_clear_reason(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JobFailure, match="cannot find alpaca_eval.json of hub dataset no-one/nothing"):
        alpaca_eval.load({"source": "no-one/nothing"}, "b")
