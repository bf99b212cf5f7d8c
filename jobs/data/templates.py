"""Prompt templates per model family, as Jinja chat templates that tokenizers apply.

The spec picks one per model (`model.template`):
  vicuna         Vicuna v1.1, as the paper gives it (App. C): "<system> USER: <prompt> ASSISTANT: <response></s>"
  mistral        Mistral [INST], as the paper gives it (App. C): "[INST] <prompt> [/INST] <response> </s>"
  chat_template  the tokenizer's own template (an error if it has none)
  plain          for pre-trained models: the HH-RLHF transcript style "Human: ...\n\nAssistant: ...</s>"

Multi-turn conversations repeat the turn pattern (Vicuna: FastChat's v1.1 separators " " and
"</s>"). Every assistant turn, with its end-of-sequence token, sits inside
`{% generation %}...{% endgeneration %}` so that TRL's `assistant_only_loss=True` (which asks the
tokenizer for `return_assistant_tokens_mask`) trains on responses only, and learns to stop.
The templates print `bos_token` first (TRL tokenizes rendered chats with add_special_tokens=False)
and `eos_token` after each response, so the same template serves any tokenizer: with LLaMA's or
Mistral's tokenizer ("<s>", "</s>") it renders the paper's strings exactly.
"""

from __future__ import annotations

from typing import Any

# the template text is shared with the login side's data check (alignkit/plan/datacheck.py)
from alignkit.contract.chat_templates import FAMILIES, MISTRAL, PLAIN, TEMPLATES, VICUNA, VICUNA_SYSTEM  # noqa: F401
from jobs.errors import JobFailure


def template_for(family: str) -> str:
    """The Jinja source of one of our own templates (not `chat_template`, which is the tokenizer's)."""
    if family not in TEMPLATES:
        raise JobFailure(f"model.template: unknown template {family!r} (expected one of {', '.join(FAMILIES)})")
    return TEMPLATES[family]


def apply_template(tokenizer: Any, model: Any) -> None:
    """Set `tokenizer.chat_template` from the model config's `template` (the typed ModelConfig of
    alignkit.contract.common).

    `chat_template` keeps the tokenizer's own (it must have one, and for SFT's response-only loss
    it should mark assistant turns with `{% generation %}`; TRL otherwise swaps in its own
    training template for known families).
    """
    from alignkit.contract import expect
    from alignkit.contract.common import ModelConfig

    family, name = expect(model, ModelConfig, "jobs.data.templates.apply_template").template, model.name
    if family == "chat_template":
        if not getattr(tokenizer, "chat_template", None):
            raise JobFailure(
                f"model {name}: template 'chat_template' asks for the tokenizer's own chat template, "
                f"but the tokenizer has none; pick vicuna, mistral or plain")
        return
    tokenizer.chat_template = template_for(family)


def render(model_family: str, messages: list[dict], add_generation_prompt: bool = False,
           bos_token: str = "", eos_token: str = "</s>") -> str:
    """Render `messages` with one of our templates, without a tokenizer.

    The defaults reproduce the paper's strings (which show LLaMA's "</s>" and no BOS).
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[messages], chat_template=template_for(model_family),
        add_generation_prompt=add_generation_prompt, bos_token=bos_token, eos_token=eos_token)
    return rendered[0]
