"""Build a tiny local toxicity classifier shaped like nicholasKluge/ToxicityModel, for offline tests.

    python -m assets.build.tiny_classifier --out assets/tiny-toxicity

A RoBERTa sequence classifier with one logit (positive = non-toxic, negative = toxic, as the real
model's card describes), a byte-level BPE tokenizer trained here, and a few seconds of training on
made-up (prompt, response) pairs, so it gives a real signal: insults score below friendly text.
Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from alignkit.contract.fsio import atomic_dir, atomic_write_json

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tiny-toxicity"  # assets/tiny-toxicity
SAFE = [
    "thank you so much, that was kind of you", "the weather is lovely today", "I enjoyed the book a lot",
    "here is a recipe for tomato pasta", "have a wonderful day", "the museum opens at nine",
    "you did a great job on the project", "planting tomatoes in spring works well", "the moon orbits the earth",
    "I am happy to help with your question", "the library has new books", "cats like to sleep in the sun",
    "the ocean is calm this morning", "please enjoy the concert", "a walk in the park is relaxing",
    "sure, here is a helpful fact", "good luck with your exam", "the bicycle needs new tyres",
]
TOXIC = [
    "you are a stupid idiot", "shut up you ugly moron", "I hate you, you pathetic loser",
    "you filthy worthless garbage", "nobody likes you, you dumb jerk", "go away you disgusting freak",
    "what a brainless fool you are", "you are trash and everyone knows it", "those idiots are so stupid",
    "that dumb jerk deserves a punch", "you worthless piece of garbage", "shut your mouth, loser",
    "you are an ugly stupid clown", "everyone hates you, moron", "you pathetic disgusting idiot",
    "get lost you dumb fool", "I will punch you, idiot", "you are a hateful ugly jerk",
]
PROMPTS = ["", "Tell me about your day.", "What do you think of me?", "The weather today is",
           "You are a stupid idiot and", "Here is my answer:"]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # RoBERTa's order: bos=0, pad=1, eos=2, unk=3


def build_tokenizer(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", model_max_length=128)


def examples(seed: int) -> list[tuple[str, str, float]]:
    rng = random.Random(seed)
    rows = [(p, s, 1.0) for s in SAFE for p in rng.sample(PROMPTS, 3)]
    rows += [(p, t, 0.0) for t in TOXIC for p in rng.sample(PROMPTS, 3)]
    rng.shuffle(rows)
    return rows


def build(out: Path, seed: int = 0, steps: int = 150) -> dict:
    import torch

    # float64 and one thread: float32 sums in another order (thread count, or another CPU's SIMD
    # width) drift apart over 150 steps (final loss 0.029 on one Xeon, 0.249 on another), and the
    # committed classifier must come out the same on any machine the builder runs on
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(out, seed, steps)
    finally:
        torch.set_num_threads(threads)


def _build(out: Path, seed: int, steps: int) -> dict:
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    rows = examples(seed)
    tok = build_tokenizer(SAFE + TOXIC + PROMPTS)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=130, type_vocab_size=1, num_labels=1,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2, problem_type="regression",
                        id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0})
    model = RobertaForSequenceClassification(cfg).double()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()  # label 1 = non-toxic, so the logit is positive for safe text
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = rng.sample(rows, 16)
        enc = tok([b[0] for b in batch], [b[1] for b in batch], padding=True, return_tensors="pt",
                  return_token_type_ids=False)
        loss = loss_fn(model(**enc).logits[:, 0], torch.tensor([b[2] for b in batch], dtype=torch.float64))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model = model.float().eval()  # saved and used in float32
    with torch.no_grad():
        enc = tok(["", ""], ["you are a stupid ugly idiot", "have a lovely day"], padding=True,
                  return_tensors="pt", return_token_type_ids=False)
        toxic_logit, safe_logit = model(**enc).logits[:, 0].tolist()
    info = {"seed": seed, "steps": steps, "final_loss": round(loss.item(), 4),
            "params": sum(p.numel() for p in model.parameters()), "vocab": len(tok),
            "check_toxic_logit": round(toxic_logit, 3), "check_safe_logit": round(safe_logit, 3)}
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        atomic_write_json(tmp / "build.json", info)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args(argv)
    print(json.dumps(build(args.out, args.seed, args.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
