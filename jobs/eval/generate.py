"""Greedy generation for the safety/generation evals: HF `generate` (the default), or vLLM when asked.

Prompts arrive as rendered strings. A prompt rendered by our chat templates already starts with the
BOS token, so it is tokenized without special tokens; raw text (RealToxicityPrompts continuations)
gets the tokenizer's usual BOS (`prompt_ids`, the one rule the generators and `alignkit preview` share).

A prompt is never cut to make room for new tokens: each prompt gets its own budget,
`min(max_new_tokens, context - prompt tokens)` (`budget`), where the context is the model config's
(`context_length`). A prompt that alone fills the context gets no answer (an empty string) and is
counted (`Budgets.no_room`); `generate_all` hands the counts to the benchmark's eval.json entry.

Batch size is automatic: the HF path starts large on CUDA (small on CPU) and halves on CUDA OOM.
Prompts with the same budget share batches (left padding, longest first), so no batch runs past
the context. The vLLM path (GPU clusters only, opt-in: `generation.backend: vllm`; vLLM cannot be
installed on the CPU dev box, so CI never runs it) builds one engine per job with LoRA enabled and
passes each checkpoint's adapter as a `LoRARequest`, so it too loads the base once; before a job
trusts it, `check_agreement` compares its greedy answers with HF's on the first prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.contract.sections import CONTEXT_KEYS  # the config keys holding a context length (plan reads them too)
from jobs.errors import JobFailure


def context_length(hf_config: Any) -> int | None:
    """The model's context in tokens from its Hugging Face config (an object or the model's config.json
    dict, not ours); None if unknown."""
    for key in CONTEXT_KEYS:
        v = hf_config.get(key) if isinstance(hf_config, dict) else getattr(hf_config, key, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The exact token ids a prompt is generated from (no second BOS on a templated prompt)."""
    bos = tokenizer.bos_token
    return list(tokenizer(prompt, add_special_tokens=not (bos and prompt.startswith(bos)))["input_ids"])


def budget(prompt_tokens: int, max_new_tokens: int, context: int | None) -> int:
    """New tokens for one prompt: what the context leaves, never more than asked (0: no room)."""
    return max_new_tokens if context is None else max(0, min(max_new_tokens, context - prompt_tokens))


@dataclass
class Budgets:
    """How one benchmark's prompts fit the context: eval.json's `capped`, `no_room`, `context`."""
    max_new_tokens: int
    context: int | None
    per_prompt: list[int] = field(default_factory=list)

    @property
    def capped(self) -> int:  # answers allowed fewer new tokens than max_new_tokens
        return sum(b < self.max_new_tokens for b in self.per_prompt)

    @property
    def no_room(self) -> int:  # prompts that fill the context alone: no answer at all
        return sum(b == 0 for b in self.per_prompt)

    def record(self) -> dict:
        return {"capped": self.capped, "no_room": self.no_room, "context": self.context,
                "min_budget": min(self.per_prompt) if self.per_prompt else None}


def budgets(tokenizer: Any, prompts: list[str], max_new_tokens: int, context: int | None) -> Budgets:
    if context is None:  # nothing caps: no need to tokenize
        return Budgets(max_new_tokens, None, [max_new_tokens] * len(prompts))
    return Budgets(max_new_tokens, context,
                   [budget(len(prompt_ids(tokenizer, p)), max_new_tokens, context) for p in prompts])


def generate_all(generator: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> tuple[list[str], dict]:
    """The generator's answers and the budget record for the benchmark's entry."""
    context = getattr(generator, "context", None)
    record = budgets(tokenizer, prompts, max_new_tokens, context).record()
    return generator.generate(prompts, max_new_tokens), record


def render_prompt(tokenizer: Any, text: str, use_template: bool) -> str:
    """A single user turn through the model's template (set by jobs.data.templates.apply_template), or raw text."""
    if not use_template:
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


class HFGenerator:
    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, device: str, batch_size: int | None = None) -> None:
        self.model, self.tok, self.device = model, tokenizer, device
        self.batch_size = batch_size or (64 if device.startswith("cuda") else 8)

    @property
    def context(self) -> int | None:
        return context_length(self.model.config)

    def set_model(self, model: Any) -> None:
        """The base with this checkpoint's adapter active (the eval job swaps adapters on one model)."""
        self.model = model

    def set_checkpoint(self, name: str, adapter_dir: Path | None) -> None:
        """The caller swapped the adapter on the shared PEFT model already (set_model)."""

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        import torch

        ids = [prompt_ids(self.tok, p) for p in prompts]
        context = self.context
        given = [budget(len(x), max_new_tokens, context) for x in ids]
        results: dict[int, str] = {k: "" for k, b in enumerate(given) if b == 0}  # no room: no answer
        # One group per budget (nearly always one: max_new_tokens), longest prompts first: batches of
        # similar length waste less padding, and no batch's longest prompt + budget passes the context.
        groups: dict[int, list[int]] = {}
        for k in sorted(range(len(prompts)), key=lambda k: -len(ids[k])):
            if given[k] > 0:
                groups.setdefault(given[k], []).append(k)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        old_side = self.tok.padding_side
        self.tok.padding_side = "left"  # decoder-only batched generation pads on the left
        try:
            for new, order in groups.items():
                i = 0
                while i < len(order):
                    idx = order[i:i + self.batch_size]
                    enc = self.tok.pad({"input_ids": [ids[k] for k in idx]}, padding=True,
                                       return_tensors="pt").to(self.device)
                    try:
                        with torch.no_grad():
                            gen = self.model.generate(**enc, max_new_tokens=new, do_sample=False, pad_token_id=pad,
                                                      temperature=None, top_p=None, top_k=None)
                    except torch.OutOfMemoryError:
                        if self.batch_size == 1:
                            raise
                        self.batch_size //= 2
                        torch.cuda.empty_cache()
                        continue
                    texts = self.tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                    results.update(zip(idx, texts, strict=True))
                    i += len(idx)
        finally:
            self.tok.padding_side = old_side
        return [results[k] for k in range(len(prompts))]


class VLLMGenerator:
    """One vLLM engine for the job; adapters ride along per request (GPU clusters only)."""

    name = "vllm"

    def __init__(self, model_dir: str, revision: str | None, dtype: str, max_lora_rank: int,
                 enable_lora: bool, tokenizer: Any, context: int | None, gpu_memory_utilization: float = 0.45,
                 llm: Any = None, sampling_params: Any = None) -> None:
        # `llm`, `sampling_params`: an engine and its SamplingParams class made elsewhere (the tests
        # inject stand-ins through them: vLLM cannot be installed here)
        if llm is None:
            from vllm import LLM, SamplingParams  # noqa: PLC0415  (only where vLLM exists)

            # The HF copy used by lm-eval shares the GPU, hence the memory share.
            llm = LLM(model=model_dir, revision=revision, dtype=dtype, enable_lora=enable_lora,
                      max_lora_rank=max_lora_rank, gpu_memory_utilization=gpu_memory_utilization)
            sampling_params = SamplingParams
        self.llm, self.sampling_params = llm, sampling_params
        self.enable_lora = enable_lora
        self.tok = tokenizer
        self.context = context
        self.lora = None
        self._next_id = 1

    def set_checkpoint(self, name: str, adapter_dir: Path | None) -> None:
        if adapter_dir is None or not self.enable_lora:
            self.lora = None
            return
        from vllm.lora.request import LoRARequest

        self.lora = LoRARequest(f"ckpt-{name}", self._next_id, str(adapter_dir))
        self._next_id += 1

    def set_model(self, model: Any) -> None:
        """vLLM serves its own copy of the weights."""

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        # Token ids, tokenized as the HF path does (no second BOS), each with its own budget.
        ids = [prompt_ids(self.tok, p) for p in prompts]
        given = [budget(len(x), max_new_tokens, self.context) for x in ids]
        todo = [k for k, b in enumerate(given) if b > 0]
        outs = self.llm.generate([{"prompt_token_ids": ids[k]} for k in todo],
                                 [self.sampling_params(temperature=0.0, max_tokens=given[k]) for k in todo],
                                 lora_request=self.lora, use_tqdm=False)
        texts = dict.fromkeys(range(len(prompts)), "")
        texts.update((k, o.outputs[0].text) for k, o in zip(todo, outs, strict=True))
        return [texts[k] for k in range(len(prompts))]


# ---- vLLM opt-in: agree with HF first --------------------------------------------------------


def agreement(reference: list[str], other: list[str]) -> float:
    """The exact-match share of two engines' greedy answers (whitespace at the ends ignored)."""
    if not reference:
        return 1.0
    return sum(a.strip() == b.strip() for a, b in zip(reference, other, strict=True)) / len(reference)


def check_agreement(hf: Any, vllm: Any, prompts: list[str], max_new_tokens: int, n: int,
                    threshold: float) -> dict:
    """Generate the first `n` prompts with both engines; fail the job below `threshold`.

    Greedy decoding in bf16 differs between engines by kernel order, so a few answers may diverge
    late; a low share means a wrong template, adapter or tokenization on one side."""
    first = prompts[:n]
    ref, got = hf.generate(first, max_new_tokens), vllm.generate(first, max_new_tokens)
    share = agreement(ref, got)
    record = {"prompts": len(first), "exact_match": share, "threshold": threshold,
              "max_new_tokens": max_new_tokens}
    if share < threshold:
        k = next((i for i, (a, b) in enumerate(zip(ref, got, strict=True)) if a.strip() != b.strip()), None)
        raise JobFailure(f"generation.backend vllm: its greedy answers match HF's on {share:.0%} of the first "
                         f"{len(first)} prompts, below agreement_threshold {threshold:g} (first difference: "
                         f"prompt {k}); use backend hf, or check the template, adapter and dtype")
    return record


class CheckedVLLM:
    """vLLM that proves itself per checkpoint: the first generation after each `set_checkpoint`
    first runs `check_agreement` against HF on its first prompts (records in `agreement`)."""

    name = "vllm"

    def __init__(self, vllm: Any, hf: HFGenerator, prompts: int, threshold: float) -> None:
        # prompts, threshold: the config's generation.agreement_prompts/_threshold (defaults: GenerationSpec)
        self.vllm, self.hf, self.prompts, self.threshold = vllm, hf, prompts, threshold
        self.agreement: dict[str, dict] = {}
        self._pending: str | None = None

    @property
    def context(self) -> int | None:
        return self.vllm.context

    def set_model(self, model: Any) -> None:
        self.hf.set_model(model)

    def set_checkpoint(self, name: str, adapter_dir: Path | None) -> None:
        self.vllm.set_checkpoint(name, adapter_dir)
        self._pending = name

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        if self._pending is not None and self.prompts > 0:
            self.agreement[self._pending] = check_agreement(self.hf, self.vllm, prompts, max_new_tokens,
                                                            self.prompts, self.threshold)
        self._pending = None
        return self.vllm.generate(prompts, max_new_tokens)
