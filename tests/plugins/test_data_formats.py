"""TRL's dataset formats (alignkit/plugins/formats/): recognised from their columns, converted as TRL
reads them (implicit prompts extracted as trl.data_utils.extract_prompt does), read by the train
job's loader, and the SFT loss on the tokens TRL's rules name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from alignkit.plugins import formats  # noqa: E402
from alignkit.plugins.formats import Sample, preference  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "assets" / "tiny-llama"


def u(text):
    return {"role": "user", "content": text}


def a(text):
    return {"role": "assistant", "content": text}


class Part:
    def __init__(self):
        self.rows, self.kept, self.dropped, self.preference = 0, 0, {}, "helpful"

    def drop(self, reason):
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def convert(name, rows):
    cols = sorted({k for r in rows for k in r})
    return formats.get(name).convert(Sample(rows, cols), "f.jsonl", Part())


# TRL docs/source/dataset_formats.md's own examples, standard and conversational, and what auto picks
DETECTED = [
    ({"text": "The sky is blue."}, "language_modeling"),
    ({"messages": [u("What color is the sky?"), a("It is blue.")]}, "language_modeling"),
    ({"prompt": "The sky is", "completion": " blue."}, "prompt_completion"),
    ({"prompt": [u("What color is the sky?")], "completion": [a("It is blue.")]}, "prompt_completion"),
    ({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}, "preference"),
    ({"chosen": "The sky is blue.", "rejected": "The sky is green."}, "preference"),
    ({"prompt": "The sky is", "completion": " blue.", "label": True}, "unpaired_preference"),
    ({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go"}, "hh_rlhf"),
    ({"prompt": "p", "response_0": "a", "response_1": "b", "is_response_0_safe": True,
      "is_response_1_safe": False, "better_response_id": 0}, "beavertails"),
]


@pytest.mark.parametrize("row,name", DETECTED)
def test_auto_recognises_trl_formats_from_their_columns(row, name):
    assert formats.detect(row.keys(), row, "f.jsonl") == name
    got = convert(name, [row])
    assert formats.rows_type(got[0].keys()) == formats.get(name).ROWS


def test_auto_names_the_file_and_fields_when_nothing_matches():
    with pytest.raises(formats.UnknownFormat, match=r"^f.jsonl: no data format matches its fields \(question, answer\)"):
        formats.detect(["question", "answer"], {}, "f.jsonl")


def test_implicit_prompt_as_trl_extracts_it():
    # ultrafeedback_binarized's train_prefs shape: a string prompt beside conversational chosen/rejected
    row = {"prompt": "Name a color.", "chosen": [u("Name a color."), a("Blue.")],
           "rejected": [u("Name a color."), a("Seven.")], "score_chosen": 8.0, "score_rejected": 2.0}
    assert convert("preference", [row]) == [{"prompt": [u("Name a color.")], "chosen": [a("Blue.")],
                                             "rejected": [a("Seven.")]}]
    # standard implicit prompt: the shared characters, the space moved to the responses (TRL's rule)
    assert preference.extract_prompt("The sky is blue.", "The sky is green.") == ("The sky is", " blue.", " green.")
    multi = {"chosen": [u("Hi"), a("Hello"), u("2+2?"), a("4")], "rejected": [u("Hi"), a("Hello"), u("2+2?"), a("5")]}
    assert convert("preference", [multi])[0]["prompt"] == [u("Hi"), a("Hello"), u("2+2?")]


def test_trl_extract_prompt_is_what_we_copy():
    from trl.data_utils import extract_prompt

    for chosen, rejected in [("The sky is blue.", "The sky is green."),
                             ([u("q"), a("x")], [u("q"), a("y")]), ("abc", "abd"), ("same", "same!")]:
        got = extract_prompt({"chosen": chosen, "rejected": rejected})
        assert preference.extract_prompt(chosen, rejected) == (got["prompt"], got["chosen"], got["rejected"])


@pytest.mark.parametrize("name,row,message", [
    ("preference", {"prompt": [u("q")], "chosen": [a("x")]}, "f.jsonl row 1: field 'rejected' missing"),
    ("unpaired_preference", {"prompt": "q", "completion": "x", "label": 1},
     "f.jsonl row 1: field 'label' should be bool, got int"),
    ("unpaired_preference", {"prompt": "q", "completion": "  ", "label": True},
     "f.jsonl row 1: field 'completion' message 1 is empty"),
    ("prompt_completion", {"prompt": [a("x")], "completion": "y"},
     "f.jsonl row 1: field 'prompt' should end with a user message"),
    ("language_modeling", {"messages": [u("only a question")]}, "f.jsonl row 1: field 'messages' has no assistant"),
    ("language_modeling", {"messages": [{"role": "tool", "content": "x"}]}, "unknown role 'tool'"),
])
def test_a_bad_row_is_one_line_naming_file_row_and_field(name, row, message):
    cols = {"preference": ["prompt", "chosen", "rejected"]}.get(name, sorted(row))
    with pytest.raises(formats.RowError) as err:
        formats.get(name).convert(Sample([row], cols), "f.jsonl", Part())
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unpaired_rows_refused_for_pairwise_methods_accepted_by_kto():
    from alignkit.plugins.methods import METHODS

    assert formats.refusal(METHODS.get("kto"), "unpaired_preference") is None
    assert formats.refusal(METHODS.get("kto"), "preference") is None  # unpaired by KTO as before
    why = formats.refusal(METHODS.get("dpo"), "unpaired_preference")
    assert why.startswith("dpo trains on preference data, not unpaired preference data")
    assert formats.refusal(METHODS.get("sft"), "language_modeling") is None
    assert "sft" in formats.refusal(METHODS.get("sft"), "unpaired_preference")


def _load(tmp_path, rows, fmt="auto", name="d.jsonl"):
    from jobs.data import load_preferences_with_report

    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from tests.fixtures.train_configs import typed_dataset

    cfg = typed_dataset({"name": "d", "format": fmt, "source": str(path), "revision": "main", "split": "train"})
    return load_preferences_with_report(cfg, ["original"], seed=0)


def test_the_job_loader_reads_each_format_by_auto(tmp_path):
    ds, report = _load(tmp_path, [{"prompt": "q", "completion": "x", "label": i % 2 == 0} for i in range(4)])
    assert sorted(ds.column_names) == ["completion", "label", "prompt"] and report.total == 4
    assert ds[0]["prompt"] == [u("q")] and ds[0]["completion"] == [a("x")]
    ds, _ = _load(tmp_path, [{"messages": [u(f"q{i}"), a("x")]} for i in range(3)])
    assert ds.column_names == ["messages"]


def test_the_job_loader_refuses_a_bad_row_naming_it(tmp_path):
    from jobs.errors import JobFailure

    rows = [{"prompt": "q", "chosen": "x", "rejected": "y"}] * 2 + [{"prompt": "q", "chosen": "x"}]
    with pytest.raises(JobFailure, match=r"d.jsonl row 3: field 'rejected' missing"):
        _load(tmp_path, rows)


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY)


def test_sft_messages_loss_on_every_token_or_the_assistant_turns(tok):
    from jobs.data.examples import messages_example

    conv = [u("Hi"), a("Hello there"), u("Bye"), a("See you")]
    full = messages_example(conv, tok, 512, assistant_only=False)
    assert set(full["completion_mask"]) == {1}
    ex = messages_example(conv, tok, 512, assistant_only=True)
    assert ex["input_ids"] == full["input_ids"]
    loss = tok.decode([t for t, m in zip(ex["input_ids"], ex["completion_mask"], strict=True) if m])
    other = tok.decode([t for t, m in zip(ex["input_ids"], ex["completion_mask"], strict=True) if not m])
    assert "Hello there" in loss and "See you" in loss and "Hi" not in loss and "Bye" not in loss
    assert "Hi" in other and "Bye" in other
    # the tiny model's template marks its assistant turns ({% generation %}): TRL's own mask is used
    assert "generation" in tok.chat_template
    trl_mask = tok.apply_chat_template(conv, return_dict=True, return_assistant_tokens_mask=True)["assistant_masks"]
    assert list(trl_mask) == ex["completion_mask"]


def test_sft_assistant_turns_without_generation_markers(tok):
    """A template without markers: each assistant turn from its generation prompt to its end."""
    from transformers import AutoTokenizer

    from jobs.data.examples import messages_example

    bare = AutoTokenizer.from_pretrained(TINY)
    bare.chat_template = tok.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    conv = [u("Hi"), a("Hello there"), u("Bye"), a("See you")]
    ex = messages_example(conv, bare, 512, assistant_only=True)
    loss = bare.decode([t for t, m in zip(ex["input_ids"], ex["completion_mask"], strict=True) if m])
    assert "Hello there" in loss and "See you" in loss and "Hi" not in loss and "Bye" not in loss


def test_sft_text_and_prompt_completion_masks(tok):
    from jobs.data.examples import sft_example, text_example

    ex = text_example("The sky is blue.", tok, 512)
    assert set(ex["completion_mask"]) == {1} and ex["input_ids"][-1] == tok.eos_token_id
    row = {"prompt": [u("Sky?")], "completion": [a("Blue.")]}
    only = sft_example(row, tok, 512)
    assert 0 in only["completion_mask"] and "Blue." in tok.decode(
        [t for t, m in zip(only["input_ids"], only["completion_mask"], strict=True) if m])
    assert set(sft_example(row, tok, 512, completion_only=False)["completion_mask"]) == {1}


def test_sft_assistant_only_loss_is_written_only_when_on():
    from alignkit.contract.serial import to_json
    from alignkit.plugins.methods import METHODS, resolve_config

    f = METHODS.get("sft").fields
    lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ("q_proj",)}
    from alignkit.contract.methods import LoraFields

    off = resolve_config("sft", f(type="sft", learning_rate=1e-4, lora=LoraFields(**lora)))
    on = resolve_config("sft", f(type="sft", learning_rate=1e-4, lora=LoraFields(**lora), assistant_only_loss=True))
    assert "assistant_only_loss" not in to_json(off) and to_json(on)["assistant_only_loss"] is True


def _sft_trainer(tmp_path, source: Path, **method):
    """The job's SFT trainer on a local file (format auto), built as jobs.train.run builds it."""
    from jobs.train import stage as train
    from jobs.train import trl_adapter
    from tests.fixtures.train_configs import train_config, typed

    config = train_config("sft")
    config["method"].update(method)
    config["dataset"] = {"name": "mine", "format": "auto", "source": str(source), "revision": "main",
                         "split": "train", "subsets": None, "limit": None}
    config["preference"] = ["all"]
    config = typed(config)
    plan = train.resolve(config, cuda=False, world_size=1)
    data = train.load_examples(config, plan.method)
    args = trl_adapter.make_args(plan.method, config, trl_adapter.Runtime(
        output_dir=str(tmp_path / "out"), grad_accum=1, optimizer="adamw_torch", bf16=False, deepspeed=None,
        liger=False, ddp_backend=None))
    model = train.load_model(config.model, plan, 0, device=args.device)
    trainer = trl_adapter.make_trainer(plan.method, config, model=model, tokenizer=data.tokenizer,
                                       dataset=data.dataset, peft_config=train.lora_config(config.method.lora),
                                       args=args, callbacks=[])
    return data, trainer


@pytest.mark.slow
@pytest.mark.parametrize("assistant_only", [False, True])
def test_the_sft_trainer_labels_messages_by_trls_rule(tmp_path, assistant_only):
    rows = [{"messages": [u(f"Question {i}?"), a(f"Answer {i}."), u("Thanks!"), a("You are welcome.")]}
            for i in range(8)]
    data_file = tmp_path / "chat.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data, trainer = _sft_trainer(tmp_path, data_file, assistant_only_loss=assistant_only)
    tok = data.tokenizer
    assert data.report.trained == 8
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = [t for t in batch["labels"][0].tolist() if t != -100]
    loss = tok.decode(labels)
    assert "Answer" in loss and "You are welcome." in loss
    if assistant_only:
        assert "Question" not in loss and "Thanks!" not in loss
    else:
        assert labels == [t for t in batch["input_ids"][0].tolist()]  # every token


@pytest.mark.slow
def test_the_sft_trainer_labels_every_token_of_text_rows(tmp_path):
    data_file = tmp_path / "text.jsonl"
    data_file.write_text("".join(json.dumps({"text": f"The sky is blue, said row {i}."}) + "\n" for i in range(8)))
    data, trainer = _sft_trainer(tmp_path, data_file)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert labels == ids and ids[-1] == data.tokenizer.eos_token_id


@pytest.mark.parametrize("name", formats.names())
def test_every_registered_format_keeps_the_plug_in_contract(name):
    """Registered by scanning the package (no list to edit); pure python; rows of a known type."""
    import subprocess
    import sys

    mod = formats.get(name)
    assert mod.ROWS in formats.ROW_TYPES and callable(mod.convert)
    every_column = sorted({k for row, _ in DETECTED for k in row})
    part = Part()
    assert mod.convert(Sample([], every_column), "f", part) == [] and (part.rows, part.kept) == (0, 0)
    if hasattr(mod, "detect"):  # `format: auto` can pick it: one of TRL's examples above is its
        assert any(formats.detect(row.keys(), row, "f") == name for row, _ in DETECTED)
    code = (f"import sys; import alignkit.plugins.formats.{name}; "
            "bad = [m for m in ('torch', 'datasets', 'transformers', 'jobs') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
