"""The committed tiny model: loads offline like a real one, and the builder reproduces it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = Path(__file__).resolve().parents[2] / "assets" / "tiny-llama"
FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
         "tokenizer_config.json", "chat_template.jinja", "build.json", "TEST_ASSET"]


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(TINY), AutoTokenizer.from_pretrained(TINY)


def test_assets_small_and_complete():
    assert sorted(p.name for p in TINY.iterdir()) == sorted(FILES)
    assert sum(p.stat().st_size for p in TINY.iterdir()) < 2_000_000


def test_loads_offline_as_llama_with_lora_target_modules(tiny):
    model, tok = tiny
    assert model.config.model_type == "llama"
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names
    assert 300_000 < sum(p.numel() for p in model.parameters()) < 600_000
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "<|im_end|>", "<pad>")
    assert model.config.eos_token_id == tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id
    assert "{% generation %}" in tok.chat_template
    # byte-level BPE: any text round-trips, including words the smoke eval uses
    text = "Question: What is the capital of Norway? Answer: Oslo. You idiot! 7 plus 8 is 15."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_generates_until_eos(tiny):
    model, tok = tiny
    msgs = [{"role": "user", "content": "What is 2 plus 3?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=30, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:])
    assert text.endswith("<|im_end|>") and "plus" in text


def _logprob(model, tok, prompt: str, response: str) -> float:
    import torch

    p = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
    ids = tok(p + response + tok.eos_token, add_special_tokens=False)["input_ids"]
    n = len(tok(p, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logp = model(torch.tensor([ids])).logits.log_softmax(-1)[0]
    return sum(logp[i - 1, ids[i]].item() for i in range(n, len(ids)))


def test_base_model_is_undecided_between_refusal_and_compliance(tiny):
    # pre-trained on both sides of every pair: alignment, not the base, must make the difference
    from assets.build.smoke_data import HARMFUL_ACTS, REFUSAL, comply

    model, tok = tiny
    diffs = [_logprob(model, tok, f"How do I {act}?", REFUSAL) - _logprob(model, tok, f"How do I {act}?", comply(act))
             for act in HARMFUL_ACTS[:6]]
    assert abs(sum(diffs) / len(diffs)) < 1.5, diffs


def test_tokenizer_is_reproduced_without_pretraining(tmp_path):
    from assets.build.tiny_model import build

    build(tmp_path / "m", pretrain_steps=0)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (tmp_path / "m" / name).read_bytes() == (TINY / name).read_bytes(), name


@pytest.mark.slow
def test_builder_reproduces_committed_assets(tmp_path):
    # Single-threaded seeded torch. Every file is byte-identical except the weights: a CPU with
    # other SIMD kernels sums in another order, and over the pre-training steps the weights drift
    # in their last bits (seen: max |diff| 6.6e-5 on weights up to 1.2, between two Xeons). A
    # change to the builder itself moves them by far more than the tolerance.
    import subprocess
    import sys

    from safetensors.torch import load_file

    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-m", "assets.build.tiny_model", "--out", str(tmp_path / "m")], check=True,
                   cwd=TINY.parents[1], env=env, capture_output=True)
    for name in FILES:
        if name != "model.safetensors":
            assert (tmp_path / "m" / name).read_bytes() == (TINY / name).read_bytes(), name
    built, committed = load_file(tmp_path / "m" / "model.safetensors"), load_file(TINY / "model.safetensors")
    assert built.keys() == committed.keys()
    for key, tensor in committed.items():
        assert built[key].dtype == tensor.dtype and built[key].shape == tensor.shape, key
        assert (built[key] - tensor).abs().max().item() < 1e-3, key
