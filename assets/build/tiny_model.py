"""Build the tiny offline model: `python -m assets.build.tiny_model --out DIR` (default assets/tiny-llama).

A ~0.4M-parameter Llama-architecture causal LM (so its modules are q/k/v/o_proj and
gate/up/down_proj, like the real bases) with a byte-level BPE tokenizer trained here, and a
ChatML chat template whose assistant turns are marked with `{% generation %}`. It is saved in
Hugging Face format and loads with `AutoModelForCausalLM/AutoTokenizer.from_pretrained` offline.

It is briefly pre-trained (plain next-token loss, full weights) on the smoke training
conversations with *both* responses of every pair, plus a few plain sentences, so that the base
model starts near 50/50 between refusal and compliance, right and wrong answers: preference
alignment then moves it visibly in a few dozen CPU steps, where a random model would only learn
the surface of the text. Everything is seeded and single-threaded: a rebuild on the same machine
gives identical tensors and tokenizer files (tests/assets/test_tiny_model.py checks it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
from pathlib import Path

from alignkit.contract.fsio import atomic_dir

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tiny-llama"  # assets/tiny-llama
VOCAB_SIZE = 1024
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]

# ChatML with BOS first (TRL tokenizes rendered chats without adding special tokens) and the
# end-of-turn token inside the generation span (so SFT learns to stop).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Sentences in the style of the smoke eval sets (QA, multiple choice, toxicity, refusals), so the
# tokenizer's merges cover their words; byte-level BPE encodes any other text too, just longer.
EXTRA_TEXT = [
    "Question: What is the capital of France?\nA. Paris\nB. Rome\nC. Madrid\nD. Berlin\nAnswer: A",
    "The following are multiple choice questions (with answers) about geography and arithmetic.",
    "Which of the following is correct? True or False? Yes or No?",
    "You are a stupid idiot and I hate you. That is ugly, dumb, awful and terrible.",
    "I will kill you. Shut up, you worthless loser. What a disgusting, pathetic person.",
    "Thank you, my friend, that was very kind and lovely. Have a nice day!",
    "Write a short poem about the sea. Explain why the sky is blue. Give me a recipe for soup.",
    "Please answer the following question. Think step by step.",
    "I'm sorry, but I cannot help with that. I can't assist with harmful or illegal activities.",
    "Is the response harmful? Rate the answer from 1 to 10. Score: 7",
    "racist sexist stereotypical illegal toxic harmful dangerous weapons drugs violence",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18",
]


def conversations() -> list[list[dict]]:
    """Every smoke training conversation, once with each response of its pair."""
    from assets.build import smoke_data

    with tempfile.TemporaryDirectory() as tmp:
        files = smoke_data.build(Path(tmp))
    convs = []
    for rel, rows in sorted(files.items()):
        if not rel.endswith(("train.jsonl", "train.jsonl.gz")):
            continue
        for row in rows:
            if "chosen" in row:  # HH-RLHF transcripts
                for side in ("chosen", "rejected"):
                    convs.append(_parse(row[side]))
            else:
                for key in ("response_0", "response_1"):
                    convs.append([{"role": "user", "content": row["prompt"]},
                                  {"role": "assistant", "content": row[key]}])
    return convs


def _parse(transcript: str) -> list[dict]:
    msgs = []
    for chunk in transcript.split("\n\n")[1:]:
        name, _, text = chunk.partition(": ")
        msgs.append({"role": "user" if name == "Human" else "assistant", "content": text})
    return msgs


def facts() -> list[str]:
    from assets.build.smoke_data import CAPITALS

    lines = [f"The capital of {c} is {p}." for c, p in sorted(CAPITALS.items())]
    lines += [f"{a} plus {b} is {a + b}." for a in range(10) for b in range(10)]
    return lines


def build_tokenizer(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    bos = tok.token_to_id("<s>")
    # Plain `tokenizer(text)` prepends BOS like LLaMA's tokenizer does.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>", unk_token="<unk>",
        pad_token="<pad>", additional_special_tokens=["<|im_start|>", "</s>"],
        model_max_length=512, padding_side="right")
    hf.chat_template = CHAT_TEMPLATE
    return hf


def pretrain(model, tok, texts: list[str], steps: int, seed: int, batch_size: int = 16,
             max_len: int = 64, lr: float = 3e-3) -> list[float]:
    import torch

    ids = [tok(t, add_special_tokens=False)["input_ids"][:max_len] for t in texts]
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        batch = [ids[rng.randrange(len(ids))] for _ in range(batch_size)]
        width = max(len(b) for b in batch)
        x = torch.full((batch_size, width), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, width), -100, dtype=torch.long)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for i, b in enumerate(batch):
            x[i, :len(b)] = torch.tensor(b)
            labels[i, :len(b)] = torch.tensor(b)
            mask[i, :len(b)] = 1
        # cosine decay to 10% keeps the end of training calm, so the result is stable
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def build(out: Path = DEFAULT_OUT, seed: int = 0, pretrain_steps: int = 300) -> dict:
    """Build tokenizer and model into `out` (atomically); return a small summary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)  # one thread: reductions in the same order on every rebuild
    torch.use_deterministic_algorithms(True)
    convs = conversations()
    tok = build_tokenizer([m["content"] for c in convs for m in c] + facts() + EXTRA_TEXT
                          + [_template_text()])
    texts = [tok.apply_chat_template(c, tokenize=False) for c in convs] + facts()

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=96, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    losses = pretrain(model, tok, texts, pretrain_steps, seed) if pretrain_steps else []
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id

    summary = {"params": sum(p.numel() for p in model.parameters()), "vocab": len(tok),
               "pretrain_steps": pretrain_steps, "seed": seed,
               "first_loss": round(losses[0], 4) if losses else None,
               "last_loss": round(sum(losses[-20:]) / 20, 4) if losses else None}
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "build.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        (tmp / "TEST_ASSET").write_text(TEST_ASSET_TEXT)
    return summary


# The marker alignkit collect looks for (alignkit/collect/report.py TEST_ASSET_MARKER): a study that
# trains this model gets a banner saying its numbers carry no meaning.
TEST_ASSET_TEXT = ("A tiny test model (assets/build/tiny_model.py): results of studies that train it carry no "
                   "meaning; alignkit collect says so in the report.\n")


def _template_text() -> str:
    # the fixed words of our prompt templates, so the tokenizer has merges for them
    from jobs.data.templates import VICUNA_SYSTEM

    return VICUNA_SYSTEM + " USER: ASSISTANT: [INST] [/INST] Human: Assistant:"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pretrain-steps", type=int, default=300)
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(json.dumps(build(args.out, args.seed, args.pretrain_steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
