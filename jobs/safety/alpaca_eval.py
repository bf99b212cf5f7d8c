"""AlpacaEval: outputs for the 805 instructions in AlpacaEval's format, win rate by a pairwise judge.

Data: `alpaca_eval.json` of tatsu-lab/alpaca_eval, a JSON list of
  {"instruction", "output", "generator", "dataset"}; "output" is the reference model's answer
(the paper compares against GPT-4's).

The eval job writes the model's outputs in the same format ({"instruction", "output", "generator",
"dataset"}), both as generations/<ckpt>/alpaca_eval.jsonl and as alpaca_eval_model_outputs.json (a
JSON list that the official `alpaca_eval evaluate --model_outputs` reads). The judge stage shows the
judge each instruction with the two answers, in an order drawn from the instruction's hash (so
neither side always comes first), and asks for "[[1]]" or "[[2]]". win_rate = 100 * wins / judged;
replies with neither or both tags are unparseable and left out.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from jobs.errors import JobFailure
from jobs.safety.sources import read_json, resolve

FIELDS = ("instruction", "output", "generator", "dataset")
JUDGE_SYSTEM = (
    "You are a helpful assistant that compares the quality of two answers to the same instruction. "
    "Judge which answer follows the instruction better: correct, helpful, honest, clear and concise. "
    "Ignore the order in which the answers are shown and their length beyond usefulness. "
    "After a short explanation, output your verdict strictly as \"[[1]]\" if Answer 1 is better "
    "or \"[[2]]\" if Answer 2 is better.")
JUDGE_TEMPLATE = "Instruction:\n{instruction}\n\nAnswer 1:\n{first}\n\nAnswer 2:\n{second}\n\nVerdict:"


def load(cfg: dict, where: str) -> list[dict]:
    path = resolve(cfg.get("source"), "alpaca_eval.json", where, cfg.get("revision"))
    rows = read_json(path, where)
    if not isinstance(rows, list):
        raise JobFailure(f"{where}: {path} should be a JSON list of {{{', '.join(FIELDS)}}} objects")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise JobFailure(f"{where}: {path} item {i} is not an object")
        for field in ("instruction", "output"):
            if not isinstance(row.get(field), str):
                raise JobFailure(f"{where}: {path} item {i}: field {field} missing or not a string")
    limit = cfg.get("num_prompts")
    return rows[:int(limit)] if limit else rows


def generate(generator: Any, tokenizer: Any, cfg: dict, where: str, generator_name: str) -> tuple[dict, list[dict]]:
    from jobs.generate import render_prompt

    refs = load(cfg, where)
    use_template = bool(cfg.get("use_template", True))
    max_new = int(cfg.get("max_new_tokens", 512))
    outs = generator.generate([render_prompt(tokenizer, r["instruction"], use_template) for r in refs], max_new)
    rows = [{"instruction": r["instruction"], "output": o.strip(), "generator": generator_name,
             "dataset": r.get("dataset")} for r, o in zip(refs, outs, strict=True)]
    entry = {"n": len(rows), "judged": True, "max_new_tokens": max_new, "use_template": use_template,
             "decoding": "greedy", "generator": generator_name}
    return entry, rows


def _model_first(instruction: str) -> bool:
    return hashlib.sha256(instruction.encode()).digest()[0] % 2 == 0


def verdict(reply: str) -> str | None:
    one, two = reply.count("[[1]]"), reply.count("[[2]]")
    if one + two != 1:
        return None
    return "1" if one else "2"


def judge(rows: list[dict], refs: list[dict], judge: Any) -> tuple[dict, list[dict]]:
    """Compare each model output with the reference output for the same instruction."""
    by_instruction = {r["instruction"]: r for r in refs}
    results = []
    for i, row in enumerate(rows):
        ref = by_instruction.get(row["instruction"])
        if ref is None:
            raise JobFailure(f"alpaca_eval: generation row {i} has an instruction not in the reference set")
        model_first = _model_first(row["instruction"])
        first, second = (row["output"], ref["output"]) if model_first else (ref["output"], row["output"])
        reply = judge.ask(JUDGE_SYSTEM, JUDGE_TEMPLATE.format(instruction=row["instruction"],
                                                             first=first, second=second),
                          choices=("[[1]]", "[[2]]"))
        v = verdict(reply)
        win = None if v is None else (v == "1") == model_first
        results.append({"instruction": row["instruction"], "model_first": model_first, "win": win, "reply": reply})
    judged = [r["win"] for r in results if r["win"] is not None]
    n = len(judged)
    p = sum(judged) / n if n else None
    entry = {"metric": "win_rate", "win_rate": None if p is None else 100.0 * p,
             "win_rate_stderr": 100.0 * math.sqrt(p * (1 - p) / n) if n > 1 else None,
             "n": n, "wins": sum(judged), "losses": n - sum(judged),
             "unparseable": len(results) - n, "reference_generator": refs[0].get("generator") if refs else None,
             "judge": judge.name, "higher_is_better": True}
    return entry, results
