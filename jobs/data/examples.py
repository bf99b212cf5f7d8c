"""Training examples exactly as the trainer receives them: templated, tokenized, truncated, masked.

Each method (alignkit/plugins/methods/) builds its examples with these functions; the train job and
`alignkit preview` both go through the method, so what preview shows is what
trains. Tokenization is TRL 1.16's own (`trl.data_utils._tokenize` and `common_prefix_length`,
called as SFTTrainer/DPOTrainer's `tokenize_fn` call them for conversational prompt/completion
rows); truncation follows the TRL of the paper's time (docs/training.md quotes the lines):

SFT  `prompt` + `completion` (the final chosen response). The loss is on the completion only
     (`completion_mask`, TRL's completion-only loss); TRL's other SFT types (alignkit/methods/sft.py):
     `messages` (every token, or the assistant turns) and `text` (every token). The sequence keeps its first `max_length`
     tokens (TRL's `truncation_mode="keep_start"`); a row whose completion is cut away entirely
     is dropped and counted (`completion_truncated`), since it would train on nothing.
DPO  `prompt_ids`, `chosen_ids`, `rejected_ids` (TRL 1.16's columns). As TRL 0.8.6's
     `tokenize_row`: only when prompt + the longer response exceeds `max_length` is the prompt
     cut to `max_prompt_length` tokens, keeping its end; if the pair still does not fit, both
     responses keep their first `max_length - max_prompt_length` tokens. Beyond TRL (which cut
     BOS off with the rest), the cut keeps the template's head: BOS and the leading system text.

The trainer then finds the columns it would have made itself (TRL skips tokenizing an SFT set
that has `input_ids`; the DPO trainer's preparation is bypassed in alignkit/plugins/methods/dpo.py).
"""

from __future__ import annotations

import re
from typing import Any

DROP_REASONS = {"completion_truncated": "SFT: the final response lies wholly beyond max_length"}


def _tokenize(tokenizer: Any, messages: list[dict], **kwargs) -> list[int]:
    from trl.data_utils import _tokenize as trl_tokenize

    return list(trl_tokenize(tokenizer, messages, **kwargs)["input_ids"])


GENERATION = re.compile(r"{%-?\s*generation\s*-?%}")


def _tokenize_with_mask(tokenizer: Any, messages: list[dict]) -> dict:
    from trl.data_utils import _tokenize as trl_tokenize

    out = trl_tokenize(tokenizer, messages, return_assistant_tokens_mask=True)
    return {"input_ids": list(out["input_ids"]), "assistant_masks": list(out["assistant_masks"])}


def _prefix(a: list[int], b: list[int]) -> int:
    from trl.data_utils import common_prefix_length

    return common_prefix_length(a, b)


def head_length(tokenizer: Any, prompt: list[dict], prompt_ids: list[int]) -> int:
    """Tokens at the start of `prompt_ids` that a prompt cut keeps: the template's text before the
    first turn (BOS, and Vicuna's system prompt or a leading system message)."""
    system = []
    for m in prompt:
        if m["role"] != "system":
            break
        system.append(m)
    from transformers.utils.chat_template_utils import render_jinja_template

    try:  # the template over the system messages alone (apply_chat_template refuses zero messages)
        head = render_jinja_template(conversations=[system], chat_template=tokenizer.chat_template,
                                     bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token)[0][0]
    except Exception:  # a template that cannot render that (e.g. Mistral's with a system role)
        head = tokenizer.bos_token or ""
    if not head:
        return 0
    return _prefix(tokenizer(head, add_special_tokens=False)["input_ids"], prompt_ids)


def _kept(ids: list[int], mask: list[int], max_length: int) -> dict | None:
    """TRL's keep_start truncation; None when no token that carries loss is left."""
    ids, mask = ids[:max_length], mask[:max_length]
    if 1 not in mask:
        return None
    return {"input_ids": ids, "completion_mask": mask}


def sft_example(row: dict, tokenizer: Any, max_length: int, completion_only: bool = True) -> dict | None:
    """{input_ids, completion_mask} for one {prompt, completion} row, or None when truncation
    leaves no completion token. The mask marks the tokens that carry loss: the completion's
    (TRL's completion_only_loss), or every token when `completion_only` is off."""
    prompt_ids = _tokenize(tokenizer, row["prompt"], add_generation_prompt=True)
    ids = _tokenize(tokenizer, row["prompt"] + row["completion"])
    n = _prefix(prompt_ids, ids)
    if not completion_only:
        n = 0
    return _kept(ids, [0] * n + [1] * (len(ids) - n), max_length)


def messages_example(messages: list[dict], tokenizer: Any, max_length: int, assistant_only: bool) -> dict | None:
    """{input_ids, completion_mask} for one conversation (TRL's conversational language modeling):
    every token carries loss, or with `assistant_only` the assistant turns only. As TRL, by the
    template's {% generation %} markers (the tokenizer's `assistant_masks`; the templates of
    jobs/data/templates.py have them); a template without them: each assistant turn is the span the
    conversation gains from its generation prompt to its end, found as sft_example finds a
    completion (common token prefixes)."""
    if assistant_only and GENERATION.search(tokenizer.chat_template or ""):
        out = _tokenize_with_mask(tokenizer, messages)
        return _kept(out["input_ids"], list(out["assistant_masks"]), max_length)
    ids = _tokenize(tokenizer, messages)
    if not assistant_only:
        return _kept(ids, [1] * len(ids), max_length)
    mask = [0] * len(ids)
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = _prefix(_tokenize(tokenizer, messages[:k], add_generation_prompt=True), ids) if k else 0
        end = _prefix(_tokenize(tokenizer, messages[:k + 1]), ids)
        mask[start:end] = [1] * (end - start)
    return _kept(ids, mask, max_length)


def text_example(text: str, tokenizer: Any, max_length: int) -> dict | None:
    """{input_ids, completion_mask} for one plain `text` row (TRL's standard language modeling): the
    tokenizer's own special tokens, an end-of-sequence token appended when the text lacks it
    (SFTTrainer's `add_eos`), every token carrying loss."""
    eos = tokenizer.eos_token or ""
    ids = _tokenize(tokenizer, text if text.endswith(eos) else text + eos)
    return _kept(ids, [1] * len(ids), max_length)


def cut_pair(prompt: list[int], chosen: list[int], rejected: list[int], head: int, max_length: int,
             max_prompt_length: int) -> tuple[list[int], list[int], list[int]]:
    """TRL 0.8.6 `DPOTrainer.tokenize_row` truncation, keeping the prompt's first `head` tokens."""
    longer = max(len(chosen), len(rejected))
    if len(prompt) + longer > max_length:
        if len(prompt) > max_prompt_length:
            head = head if head < max_prompt_length else 0  # a head that fills the budget: TRL's plain cut
            prompt = prompt[:head] + prompt[len(prompt) - (max_prompt_length - head):]
        if len(prompt) + longer > max_length:
            chosen = chosen[:max_length - max_prompt_length]
            rejected = rejected[:max_length - max_prompt_length]
    return prompt, chosen, rejected


def dpo_example(row: dict, tokenizer: Any, max_length: int, max_prompt_length: int) -> dict:
    prompt_ids = _tokenize(tokenizer, row["prompt"], add_generation_prompt=True)
    chosen_ids = _tokenize(tokenizer, row["prompt"] + row["chosen"])
    rejected_ids = _tokenize(tokenizer, row["prompt"] + row["rejected"])
    n = min(_prefix(prompt_ids, chosen_ids), _prefix(prompt_ids, rejected_ids))
    prompt, chosen, rejected = cut_pair(prompt_ids[:n], chosen_ids[n:], rejected_ids[n:],
                                        head_length(tokenizer, row["prompt"], prompt_ids[:n]),
                                        max_length, max_prompt_length)
    return {"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected}


def to_dataset(examples: list[dict], columns: tuple[str, ...]) -> Any:
    """The trainer-ready datasets.Dataset of `examples` (each a dict holding `columns`)."""
    import datasets

    return datasets.Dataset.from_dict({c: [ex[c] for ex in examples] for c in columns})
