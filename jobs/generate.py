"""Greedy generation for the safety/generation evals: HF `generate`, or vLLM when it is installed.

Prompts arrive as rendered strings. A prompt rendered by our chat templates already starts with the
BOS token, so it is tokenized without special tokens; raw text (RealToxicityPrompts continuations)
gets the tokenizer's usual BOS.

Batch size is automatic: the HF path starts large on CUDA (small on CPU) and halves on CUDA OOM.
The vLLM path (GPU clusters; vLLM cannot be installed on the CPU dev box, so this path is untested
here) builds one engine per job with LoRA enabled and passes each checkpoint's adapter as a
`LoRARequest`, so it too loads the base once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


def vllm_available() -> bool:
    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def render_prompt(tokenizer: Any, text: str, use_template: bool) -> str:
    """A single user turn through the model's template (set by jobs.templates.apply_template), or raw text."""
    if not use_template:
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


class HFGenerator:
    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, device: str, batch_size: int | None = None) -> None:
        self.model, self.tok, self.device = model, tokenizer, device
        self.batch_size = batch_size or (64 if device.startswith("cuda") else 8)

    def set_checkpoint(self, name: str, adapter_dir: Path | None) -> None:
        """The caller swapped the adapter on the shared PEFT model already."""

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        import torch

        out: list[str] = []
        i = 0
        old_side, old_trunc = self.tok.padding_side, self.tok.truncation_side
        # Decoder-only batched generation pads on the left; over-long prompts (CoU prompts on
        # short-context models) lose their beginning, not the question at their end.
        self.tok.padding_side = self.tok.truncation_side = "left"
        limit = getattr(self.model.config, "max_position_embeddings", None)
        max_prompt = max(8, limit - max_new_tokens) if limit else None
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        bos = self.tok.bos_token
        try:
            # Longest prompts first: batches of similar length waste less padding.
            order = sorted(range(len(prompts)), key=lambda k: -len(prompts[k]))
            results: dict[int, str] = {}
            while i < len(order):
                idx = order[i:i + self.batch_size]
                batch = [prompts[k] for k in idx]
                special = not (bos and all(p.startswith(bos) for p in batch))
                enc = self.tok(batch, return_tensors="pt", padding=True, add_special_tokens=special,
                               truncation=max_prompt is not None, max_length=max_prompt).to(self.device)
                try:
                    with torch.no_grad():
                        gen = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                                  pad_token_id=pad, temperature=None, top_p=None, top_k=None)
                except torch.OutOfMemoryError:
                    if self.batch_size == 1:
                        raise
                    self.batch_size //= 2
                    torch.cuda.empty_cache()
                    continue
                texts = self.tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                results.update(zip(idx, texts, strict=True))
                i += len(idx)
            out = [results[k] for k in range(len(prompts))]
        finally:
            self.tok.padding_side, self.tok.truncation_side = old_side, old_trunc
        return out


class VLLMGenerator:
    """One vLLM engine for the job; adapters ride along per request (GPU clusters only)."""

    name = "vllm"

    def __init__(self, model_dir: str, revision: str | None, dtype: str, max_lora_rank: int,
                 enable_lora: bool, tokenizer: Any, gpu_memory_utilization: float = 0.45) -> None:
        from vllm import LLM  # noqa: PLC0415  (only where vLLM exists)

        # The HF copy used by lm-eval shares the GPU, hence the memory share.
        self.llm = LLM(model=model_dir, revision=revision, dtype=dtype, enable_lora=enable_lora,
                       max_lora_rank=max_lora_rank, gpu_memory_utilization=gpu_memory_utilization)
        self.enable_lora = enable_lora
        self.tok = tokenizer
        self.lora = None
        self._next_id = 1

    def set_checkpoint(self, name: str, adapter_dir: Path | None) -> None:
        if adapter_dir is None or not self.enable_lora:
            self.lora = None
            return
        from vllm.lora.request import LoRARequest

        self.lora = LoRARequest(f"ckpt-{name}", self._next_id, str(adapter_dir))
        self._next_id += 1

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        # Token ids, tokenized as the HF path does, so vLLM adds no second BOS to templated prompts.
        bos = self.tok.bos_token
        ids = [{"prompt_token_ids": self.tok(p, add_special_tokens=not (bos and p.startswith(bos)))["input_ids"]}
               for p in prompts]
        outs = self.llm.generate(ids, params, lora_request=self.lora, use_tqdm=False)
        return [o.outputs[0].text for o in outs]
