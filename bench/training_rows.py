"""What SFT and DPO train on, before and after issue 11 (items 1-2), on real HH-RLHF rows.

  python bench/training_rows.py --tokenizer DIR --template vicuna [--data FILE] [--max-length 512]

DIR is a tokenizer folder (tokenizer.json, or a SentencePiece tokenizer.model); default the tiny
model's. Measures:
  SFT before  prompt + chosen as one conversation, TRL's assistant_only_loss (every assistant turn
              carries loss), keep_start truncation at max_length: the share of loss tokens that come
              from earlier turns, and the rows whose final response is cut away entirely.
  SFT after   jobs.data.examples (the job's path): the same share, and rows dropped.
  DPO before  TRL 1.16 tokenization, then every prompt over max_prompt_length cut to its last tokens
              (the old _DPOTrainer): rows cut although prompt + longer response fits, rows losing BOS.
  DPO after   jobs.data.examples: the same counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tokenizer_for(path: str, template: str):
    from transformers import AutoTokenizer, LlamaTokenizer

    from jobs.data.templates import apply_template

    p = Path(path)
    tok = (AutoTokenizer.from_pretrained(p) if (p / "tokenizer_config.json").exists()
           else LlamaTokenizer.from_pretrained(p))  # a bare SentencePiece model, converted
    apply_template(tok, {"template": template, "name": p.name})
    return tok


def sft_before(rows, tok, max_length: int) -> dict:
    from trl.data_utils import _tokenize

    earlier = final = rows_no_final = 0
    for row in rows:
        msgs = row["prompt"] + row["chosen"]
        out = _tokenize(tok, msgs, return_assistant_tokens_mask=True)
        ids, mask = list(out["input_ids"])[:max_length], list(out["assistant_masks"])[:max_length]
        # tokens of the last assistant turn: those past the rendered prompt (with generation prompt)
        n_prompt = len(_tokenize(tok, row["prompt"], add_generation_prompt=True)["input_ids"])
        e = sum(mask[:n_prompt])
        f = sum(mask[n_prompt:len(ids)])
        earlier, final = earlier + e, final + f
        rows_no_final += f == 0 and e > 0
    return {"loss_tokens": earlier + final, "earlier_turn_share": earlier / (earlier + final),
            "rows_training_only_on_earlier_turns": rows_no_final}


def sft_after(rows, tok, max_length: int) -> dict:
    from jobs.data import examples, sft_rows

    sft = sft_rows(rows)
    ds, dropped, kept = examples.build("sft", sft, tok, {"max_length": max_length})
    earlier = 0
    for ex, i in zip(ds, kept, strict=True):
        row = sft[i]
        # loss tokens must all lie past the prompt; count any that do not
        n_prompt = len(examples._tokenize(tok, row["prompt"], add_generation_prompt=True))
        earlier += sum(ex["completion_mask"][:n_prompt])
    total = sum(sum(ex["completion_mask"]) for ex in ds)
    return {"loss_tokens": total, "earlier_turn_share": earlier / total, "rows": len(ds),
            "dropped": dict(dropped)}


def dpo_counts(rows, tok, max_length: int, max_prompt: int, after: bool) -> dict:
    from jobs.data import examples

    needless = cut = bos_lost = 0
    for row in rows:
        # the untruncated tokenization, as TRL 1.16's DPO tokenize_fn
        full = examples.dpo_example(row, tok, max_length=10**9, max_prompt_length=10**9)
        p, longer = full["prompt_ids"], max(len(full["chosen_ids"]), len(full["rejected_ids"]))
        if after:
            got = examples.dpo_example(row, tok, max_length, max_prompt)["prompt_ids"]
        else:
            got = p[-max_prompt:]  # the old _DPOTrainer: every long prompt keeps its last tokens
        if got != p:
            cut += 1
            needless += len(p) + longer <= max_length
            bos_lost += got[:1] != [tok.bos_token_id]
    return {"prompts_cut": cut, "cut_although_the_pair_fits": needless, "bos_lost": bos_lost}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default=str(ROOT / "assets" / "tiny-llama"))
    ap.add_argument("--template", default="vicuna", choices=("vicuna", "mistral", "plain"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hh-rlhf" /
                                          "harmless-base-test-first1000.jsonl.gz"))
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--max-prompt-length", type=int, default=128)
    a = ap.parse_args()

    from jobs.data import load_preferences
    from tests.fixtures.train_configs import typed_dataset

    rows = load_preferences(typed_dataset({"name": "hh", "format": "hh_rlhf", "source": a.data, "split": "train"}),
                            ["harmless"], seed=0)
    tok = tokenizer_for(a.tokenizer, a.template)
    out = {"tokenizer": a.tokenizer, "template": a.template, "rows": len(rows), "max_length": a.max_length,
           "max_prompt_length": a.max_prompt_length,
           "sft_before": sft_before(rows, tok, a.max_length), "sft_after": sft_after(rows, tok, a.max_length),
           "dpo_before": dpo_counts(rows, tok, a.max_length, a.max_prompt_length, after=False),
           "dpo_after": dpo_counts(rows, tok, a.max_length, a.max_prompt_length, after=True)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
