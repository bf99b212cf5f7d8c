"""Prompt templates: the paper's strings (App. C), multi-turn, and response-only loss masks."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from jobs.errors import JobFailure  # noqa: E402
from jobs.data.templates import apply_template, render  # noqa: E402

TINY = Path(__file__).resolve().parents[3] / "assets" / "tiny-llama"

# Verbatim from the paper (App. C), with ''prompt'' and ''response'' filled in.
PAPER_VICUNA = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                "helpful, detailed, and polite answers to the user's questions. USER: ''prompt'' ASSISTANT: "
                "''response''</s>")
PAPER_MISTRAL = "[INST] ''prompt'' [/INST] ''response'' </s>"

PROMPT, RESPONSE = "What is the capital of France?", "The capital of France is Paris."
ONE_TURN = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": RESPONSE}]
def _model(template: str):
    """The typed model section the train job hands apply_template (jobs take typed configs only)."""
    from alignkit.contract.common import ModelConfig

    return ModelConfig(source="tiny", template=template, name="tiny")


MULTI = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
         {"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": "4."}]


def fill(paper: str) -> str:
    return paper.replace("''prompt''", PROMPT).replace("''response''", RESPONSE)


def test_paper_strings_single_turn():
    assert render("vicuna", ONE_TURN) == fill(PAPER_VICUNA)
    assert render("mistral", ONE_TURN) == fill(PAPER_MISTRAL)
    # the generation prompt is the paper's string cut before the response
    assert render("vicuna", ONE_TURN[:1], add_generation_prompt=True) == fill(PAPER_VICUNA).split(" " + RESPONSE)[0]
    assert render("mistral", ONE_TURN[:1], add_generation_prompt=True) == fill(PAPER_MISTRAL).split(" " + RESPONSE)[0]


def test_multi_turn_and_system():
    system = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
              "helpful, detailed, and polite answers to the user's questions.")
    # FastChat's vicuna_v1.1 separators: " " after user turns, "</s>" after assistant turns
    assert render("vicuna", MULTI) == f"{system} USER: Hi. ASSISTANT: Hello.</s>USER: What is 2 plus 2? ASSISTANT: 4.</s>"
    assert render("vicuna", [{"role": "system", "content": "Be brief."}] + MULTI[:1]) == "Be brief. USER: Hi. ASSISTANT:"
    assert render("mistral", MULTI) == "[INST] Hi. [/INST] Hello. </s>[INST] What is 2 plus 2? [/INST] 4. </s>"
    assert render("plain", MULTI) == "Human: Hi.\n\nAssistant: Hello.</s>\n\nHuman: What is 2 plus 2?\n\nAssistant: 4.</s>"
    assert render("mistral", MULTI, bos_token="<s>").startswith("<s>[INST] Hi.")


def test_unknown_family_and_roles():
    with pytest.raises(JobFailure, match="unknown template 'llama3'"):
        render("llama3", ONE_TURN)
    with pytest.raises(Exception, match="unsupported role tool"):
        render("mistral", [{"role": "tool", "content": "x"}])


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY)


@pytest.mark.parametrize("family", ["vicuna", "mistral", "plain", "chat_template"])
def test_assistant_mask_covers_responses_and_eos(tiny_tokenizer, family):
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    tok = copy.deepcopy(tiny_tokenizer)
    own = tok.chat_template
    apply_template(tok, _model(family))
    assert (tok.chat_template == own) == (family == "chat_template")
    out = tok.apply_chat_template(MULTI, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    masked = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    unmasked = tok.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    assert ids[0] == tok.bos_token_id
    assert masked.replace(" ", "") == "Hello.<|im_end|>4.<|im_end|>"  # responses and their EOS only
    assert "Hi." in unmasked and "What is 2 plus 2?" in unmasked and "4." not in unmasked
    assert is_chat_template_stop_token_trained(tok)  # TRL's own check for assistant_only_loss


@pytest.mark.parametrize("family", ["vicuna", "mistral", "plain", "chat_template"])
def test_prompt_tokens_are_a_prefix_of_prompt_plus_response(tiny_tokenizer, family):
    # TRL's DPO splits prompt and completion where the two tokenizations diverge
    tok = copy.deepcopy(tiny_tokenizer)
    apply_template(tok, _model(family))
    prompt = tok.apply_chat_template(MULTI[:3], add_generation_prompt=True, tokenize=True, return_dict=True)
    full = tok.apply_chat_template(MULTI, tokenize=True, return_dict=True)
    assert full["input_ids"][:len(prompt["input_ids"])] == prompt["input_ids"]


def test_chat_template_needs_one(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    with pytest.raises(JobFailure, match="model tiny: template 'chat_template' .* has none"):
        apply_template(tok, _model("chat_template"))
