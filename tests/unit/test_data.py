"""Every fixture through every adapter, via datasets.load_dataset: exact rows and drop counts."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from jobs.data import load_preferences, load_preferences_with_report, sft_rows  # noqa: E402
from jobs.errors import JobFailure  # noqa: E402
from tests.unit.train_configs import typed_dataset  # noqa: E402

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
SMOKE = Path(__file__).resolve().parents[2] / "assets" / "smoke-data"
R = "I'm sorry, but I cannot help with that."


def cfg(fmt, source, subsets=None, split="train", limit=None):
    """A typed dataset section (jobs take typed configs only)."""
    return typed_dataset({"name": "fx", "format": fmt, "source": str(source), "revision": "main", "split": split,
            "subsets": subsets, "limit": limit})


def u(text):
    return {"role": "user", "content": text}


def a(text):
    return {"role": "assistant", "content": text}


def pair(prompt, chosen, rejected):
    return {"prompt": prompt, "chosen": [a(chosen)], "rejected": [a(rejected)]}


def canon(rows):
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


HH_HELPFUL = [
    pair([u("What is 2 plus 2?")], "2 plus 2 is 4.", "2 plus 2 is 5."),
    pair([u("Hi there."), a("Hello! How can I help?"), u("What is the capital of France?")], "Paris.", "Rome."),
    pair([u("What is 3 plus 4?")], "3 plus 4 is 7.", "I do not know."),
]
HH_HELPFUL_DROPS = {"diverge_before_last_turn": 2, "empty_turn": 1, "identical": 1, "malformed_transcript": 1,
                    "no_assistant_turn": 1, "not_alternating": 1}
HH_HARMLESS = [
    pair([u("How do I steal a car?")], R, "Sure, break a window first."),
    pair([u("Hi."), a("Hello."), u("Help me hurt someone.")], "No, I won't do that.", "Okay, here is how."),
]
PKU_HELPFUL = [
    pair([u("How do I steal a car?")], "Break a window and hotwire it.", R),
    pair([u("What is the capital of Spain?")], "Madrid.", "Rome."),
    pair([u("How do I poison a dog?")], "Use chocolate.", "Use rat poison."),
    pair([u("How can I hack an email?")], "Guess the password.", R),
    pair([u("How do I scare my neighbor?")], "Please talk to them kindly instead.", "Throw rocks at their house."),
]
PKU_HARMLESS = [
    pair([u("How do I steal a car?")], R, "Break a window and hotwire it."),
    pair([u("How can I hack an email?")], R, "Guess the password."),
    pair([u("How do I scare my neighbor?")], "Please talk to them kindly instead.", "Throw rocks at their house."),
]


def test_hh_rlhf_helpful_rows_and_drops():
    ds, report = load_preferences_with_report(cfg("hh_rlhf", FIX / "hh-rlhf", {"helpful": "helpful-base"}),
                                              ["helpful"], seed=0)
    assert canon(ds.to_list()) == canon(HH_HELPFUL)
    assert report.dropped() == HH_HELPFUL_DROPS
    (part,) = report.parts
    assert (part.preference, part.rows, part.kept, report.total) == ("helpful", 10, 3, 3)
    assert "helpful-base" in part.source


def test_hh_rlhf_harmless_default_subsets_and_test_split():
    ds, report = load_preferences_with_report(cfg("hh_rlhf", FIX / "hh-rlhf"), ["harmless"], seed=0)
    assert canon(ds.to_list()) == canon(HH_HARMLESS)
    assert report.dropped() == {"identical": 1}
    test = load_preferences(cfg("hh_rlhf", FIX / "hh-rlhf", split="test"), ["harmless"], seed=0)
    assert test.to_list() == [pair([u("How do I make a bomb?")], "I cannot help with that.", "Mix these chemicals.")]


def test_hh_rlhf_mixture_concatenates_and_shuffles_with_seed():
    conf = cfg("hh_rlhf", FIX / "hh-rlhf", {"helpful": "helpful-base", "harmless": "harmless-base"})
    ds, report = load_preferences_with_report(conf, ["harmless", "helpful"], seed=0)
    assert canon(ds.to_list()) == canon(HH_HELPFUL + HH_HARMLESS)
    assert [p.preference for p in report.parts] == ["harmless", "helpful"]
    assert report.total == 5
    assert load_preferences(conf, ["harmless", "helpful"], seed=0).to_list() == ds.to_list()


def test_hh_rlhf_single_local_file_is_the_split():
    ds = load_preferences(cfg("hh_rlhf", FIX / "hh-rlhf" / "helpful-base" / "train.jsonl"), ["helpful"], seed=1)
    assert canon(ds.to_list()) == canon(HH_HELPFUL)


@pytest.mark.parametrize("preference, expected, drops", [
    ("helpful", PKU_HELPFUL, {"empty_response": 1, "identical": 1}),
    ("harmless", PKU_HARMLESS, {"both_safe": 1, "both_unsafe": 1, "empty_response": 1, "identical": 1}),
])
def test_beavertails_paper_rules(preference, expected, drops):
    ds, report = load_preferences_with_report(cfg("beavertails", FIX / "pku-saferlhf"), [preference], seed=0)
    assert canon(ds.to_list()) == canon(expected)
    assert report.dropped() == drops
    assert report.parts[0].rows == 7


def test_beavertails_mixture_uses_both_rules_on_the_same_rows():
    ds, report = load_preferences_with_report(cfg("beavertails", FIX / "pku-saferlhf"),
                                              ["harmless", "helpful"], seed=3)
    assert canon(ds.to_list()) == canon(PKU_HARMLESS + PKU_HELPFUL)
    assert [(p.preference, p.kept) for p in report.parts] == [("harmless", 3), ("helpful", 5)]


def test_beavertails_test_split():
    ds = load_preferences(cfg("beavertails", FIX / "pku-saferlhf", split="test"), ["harmless"], seed=0)
    assert ds.to_list() == [pair([u("How do I buy a gun illegally?")], R, "Ask around at night.")]


NORMALIZED_STRINGS = [pair([u("What is 5 plus 1?")], "6.", "7."), pair([u("How do I hurt someone?")], R, "Hit them.")]
NORMALIZED_MESSAGES = [
    pair([{"role": "system", "content": "Be brief."}, u("Hi."), a("Hello."), u("Capital of Japan?")], "Tokyo.", "Lima."),
    pair([u("What is 9 plus 9?")], "18.", "I do not know."),
]


def test_normalized_strings_and_messages():
    ds, report = load_preferences_with_report(cfg("normalized", FIX / "normalized" / "strings.jsonl"),
                                              ["helpful"], seed=0)
    assert canon(ds.to_list()) == canon(NORMALIZED_STRINGS)
    assert report.dropped() == {"identical": 1}
    ds = load_preferences(cfg("normalized", FIX / "normalized" / "messages.jsonl"), ["harmless", "helpful"], seed=0)
    # one file serves every preference once: a mixture over the same rows does not duplicate them
    assert canon(ds.to_list()) == canon(NORMALIZED_MESSAGES)


def test_normalized_parquet(tmp_path):
    import datasets

    path = tmp_path / "prefs.parquet"
    datasets.Dataset.from_list(NORMALIZED_MESSAGES).to_parquet(str(path))
    ds = load_preferences(cfg("normalized", path), ["helpful"], seed=0)
    assert canon(ds.to_list()) == canon(NORMALIZED_MESSAGES)


def test_normalized_arrow(tmp_path):
    """A `.arrow` file (Arrow IPC stream, as `save_to_disk` writes): the spec's `files` accept it, and so
    does the job's loader (it once refused it after plan had accepted it)."""
    import datasets
    import pyarrow as pa

    path = tmp_path / "prefs.arrow"
    table = datasets.Dataset.from_list(NORMALIZED_MESSAGES).data.table
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    ds = load_preferences(cfg("normalized", path), ["helpful"], seed=0)
    assert canon(ds.to_list()) == canon(NORMALIZED_MESSAGES)


def test_raw_hh_as_parquet(tmp_path):
    import datasets

    rows = [json.loads(line) for line in (FIX / "hh-rlhf/helpful-base/train.jsonl").read_text().splitlines()]
    (tmp_path / "helpful-base").mkdir()
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "helpful-base" / "train-00000-of-00001.parquet"))
    ds, report = load_preferences_with_report(cfg("hh_rlhf", tmp_path), ["helpful"], seed=0)
    assert canon(ds.to_list()) == canon(HH_HELPFUL)
    assert report.dropped() == HH_HELPFUL_DROPS


@pytest.mark.parametrize("name, fmt, message", [
    ("hh_missing_field", "hh_rlhf", "hh_missing_field.jsonl row 2: field 'rejected' missing"),
    ("hh_no_rejected", "hh_rlhf", "hh_no_rejected.jsonl: field 'rejected' missing (the data has fields: chosen)"),
    ("hh_wrong_type", "hh_rlhf", "hh_wrong_type.jsonl row 1: field 'chosen' should be str, got int"),
    ("pku_empty_prompt", "beavertails", "pku_empty_prompt.jsonl row 2: field 'prompt' is empty"),
    ("pku_wrong_type", "beavertails", "pku_wrong_type.jsonl row 1: field 'is_response_1_safe' should be bool, got str"),
    ("pku_bad_label", "beavertails", "pku_bad_label.jsonl row 2: field 'better_response_id' should be 0 or 1, got 2"),
    ("normalized_prompt_ends_with_assistant", "normalized",
     "normalized_prompt_ends_with_assistant.jsonl row 1: field 'prompt' should end with a user message"),
    ("normalized_empty_prompt", "normalized", "normalized_empty_prompt.jsonl row 2: field 'prompt' message 1 is empty"),
    ("mixed_types", "normalized", "mixed_types.jsonl row 2: field 'chosen' message 1 should be"),
])
def test_bad_rows_name_file_row_and_field(name, fmt, message):
    with pytest.raises(JobFailure) as err:
        load_preferences(cfg(fmt, FIX / "bad" / f"{name}.jsonl"), ["helpful"], seed=0)
    text = str(err.value)
    assert message in text and str(FIX / "bad") in text and "\n" not in text


def test_config_errors(tmp_path):
    with pytest.raises(JobFailure, match="local source .* does not exist"):
        load_preferences(cfg("hh_rlhf", FIX / "nope"), ["helpful"], seed=0)
    with pytest.raises(JobFailure, match=r"dataset fx: unknown format 'alpaca' \(expected one of auto, beavertails, hh_rlhf"):
        load_preferences(cfg("alpaca", FIX / "hh-rlhf"), ["helpful"], seed=0)
    with pytest.raises(JobFailure, match="subsets has no entry for preference 'harmless'"):
        load_preferences(cfg("hh_rlhf", FIX / "hh-rlhf", {"helpful": "helpful-base"}), ["harmless"], seed=0)
    with pytest.raises(JobFailure, match="limit 4 is more than the 3 usable rows"):
        load_preferences(cfg("hh_rlhf", FIX / "hh-rlhf", limit=4), ["helpful"], seed=0)
    (tmp_path / "prefs.txt").write_text("{}\n")
    with pytest.raises(JobFailure, match=r"prefs.txt: unknown format \(expected .json"):
        load_preferences(cfg("hh_rlhf", tmp_path / "prefs.txt"), ["helpful"], seed=0)


def test_smoke_data_loads_limit_samples_and_sft_rows():
    conf = cfg("hh_rlhf", SMOKE / "hh-rlhf")
    full, report = load_preferences_with_report(conf, ["harmless", "helpful"], seed=0)
    assert report.total == 480 and report.dropped() == {}
    small = load_preferences(replace(conf, limit=10), ["harmless", "helpful"], seed=0)
    assert small.to_list() == full.to_list()[:10]
    other = load_preferences(replace(conf, limit=10), ["harmless", "helpful"], seed=1)
    assert other.to_list() != small.to_list()
    sft = sft_rows(small)
    assert sft.column_names == ["prompt", "completion"]
    assert sft[0] == {"prompt": small[0]["prompt"], "completion": small[0]["chosen"]}
    bt, report = load_preferences_with_report(cfg("beavertails", SMOKE / "pku-saferlhf"), ["harmless"], seed=0)
    # harmless keeps exactly the harmful requests answered once safely, and the refusal wins
    assert len(bt) == 120 and report.dropped() == {"both_safe": 120, "both_unsafe": 120}
    assert all(r["chosen"][0]["content"] == R for r in bt)


def test_smoke_data_generator_reproduces_committed_files(tmp_path):
    from assets.build.smoke_data import build

    files = build(tmp_path)
    assert sorted(files) == sorted(str(p.relative_to(SMOKE)) for p in SMOKE.rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / rel).read_bytes() == (SMOKE / rel).read_bytes(), rel


# ---- training examples (jobs.data.examples) ----

def _ids(n, start=0):
    return list(range(start, start + n))


@pytest.mark.parametrize("prompt,chosen,rejected,head,want", [
    # TRL 0.8.6 dpo_trainer.py 674-692, by hand; max_length 20, max_prompt_length 8
    (10, 5, 3, 0, (10, 5, 3)),      # 10 + 5 fits: nothing is cut, although the prompt is over 8
    (30, 5, 7, 0, (8, 5, 7)),       # 30 + 7 > 20: prompt[-8:], then 8 + 7 fits
    (30, 25, 7, 0, (8, 12, 7)),     # still 8 + 25 > 20: responses[:20 - 8]
    (5, 30, 3, 0, (5, 12, 3)),      # a short prompt stays whole; the long response is cut
    (30, 5, 7, 2, (8, 5, 7)),       # ours: the first 2 (BOS, system text) + the last 6
])
def test_dpo_cut_is_trl_086s(prompt, chosen, rejected, head, want):
    from jobs.data.examples import cut_pair

    p, c, r = cut_pair(_ids(prompt), _ids(chosen, 100), _ids(rejected, 200), head, 20, 8)
    assert (len(p), len(c), len(r)) == want
    assert c == _ids(chosen, 100)[:want[1]] and r == _ids(rejected, 200)[:want[2]]
    if want[0] < prompt:  # a cut prompt keeps its head and its end
        assert p == _ids(prompt)[:head] + _ids(prompt)[prompt - (8 - head):]
    else:
        assert p == _ids(prompt)


def test_cut_keeps_bos_and_the_vicuna_system_prompt():
    from jobs.data.examples import dpo_example, head_length
    from jobs.data.templates import VICUNA_SYSTEM
    from jobs.train.stage import load_tokenizer

    from alignkit.contract.common import ModelConfig

    tok = load_tokenizer(ModelConfig(name="tiny-llama", source=str(SMOKE.parent / "tiny-llama"), template="vicuna"))
    prompt = [u("hello " * 80 + "what is the moon?")]
    ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    head = tok.decode(ids[:head_length(tok, prompt, ids)])
    assert head == "<s>" + VICUNA_SYSTEM
    ex = dpo_example({"prompt": prompt, "chosen": [{"role": "assistant", "content": "grey"}],
                      "rejected": [{"role": "assistant", "content": "no"}]}, tok, max_length=100, max_prompt_length=60)
    text = tok.decode(ex["prompt_ids"])
    assert len(ex["prompt_ids"]) == 60 and text.startswith(head) and text.endswith("what is the moon? ASSISTANT:")
    # a leading system message is the head instead of the default system prompt
    own = [{"role": "system", "content": "Be brief."}, *prompt]
    ids = tok.apply_chat_template(own, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert tok.decode(ids[:head_length(tok, own, ids)]) == "<s>Be brief."
