"""What the judge jobs of a plan will ask their judges: calls, estimated tokens and, given a price, cost.

The rule (docs/spec.md, "Judge cost"): one call per judged item per checkpoint; a call's input is
the judge prompt's fixed text + the mean instruction + the mean reference output shown beside the
model's (AlpacaEval compares two outputs) + the model's output at its `max_new_tokens` (an upper
bound: outputs are usually shorter); its output is the reply the judge is allowed. Characters
become tokens at 4 per token, OpenAI's rule of thumb for English text. On AlpacaEval's real
annotations (../shared/data/alpaca_eval) the rule gives 1.20x the tokens the API billed, so with
real outputs in place of the upper bound it overestimates by about a fifth rather than under.
Retries (a Red-Instruct reply with the wrong tag count is asked again) are not counted.
"""

from __future__ import annotations

from typing import Any

from alignkit.plugins import benchmarks
from alignkit.contract.benchmarks import JudgedShape
from alignkit.contract.common import HF_REPLY_TOKENS, OPENAI_REPLY_TOKENS, JudgeClientConfig
from alignkit.contract.serial import to_json

CHARS_PER_TOKEN = 4  # OpenAI, "What are tokens and how to count them?": ~4 characters per token


# What one judge call of each judged benchmark type holds: each type's module says (judge_shape).
SHAPES: dict[str, JudgedShape] = {n: benchmarks.get(n).judge_shape for n in benchmarks.BENCHMARKS.names()
                                  if benchmarks.get(n).judge_shape is not None}


def call_tokens(shape: JudgedShape, output_tokens: float, judge: JudgeClientConfig) -> tuple[float, float]:
    """(input, output) tokens of one judge call whose model output has `output_tokens` tokens (the
    reply: the shape's, else the most the judge client asks for, jobs/judge/judges.py)."""
    chars = shape.template_chars + shape.instruction_chars + shape.reference_chars
    reply = shape.reply_tokens
    if reply is None:
        reply = OPENAI_REPLY_TOKENS if judge.type == "openai" else HF_REPLY_TOKENS
    return chars / CHARS_PER_TOKEN + output_tokens, float(reply)


_UNSET = object()


def _benchmark_cost(b: Any) -> tuple | None:
    """(judge, calls, input tokens per call, output tokens per call, checkpoints) of one judged
    benchmark's typed config per judge job, or None when it calls no judge or its shape is unknown."""
    shape = SHAPES.get(b.type)
    judge = b.judge
    if shape is None or judge is None:
        return None
    items = b.num_prompts or shape.items
    at = b.checkpoints or ("final",)
    calls = items * len(at)
    tin, tout = call_tokens(shape, benchmarks.get(b.type).generation_length(b), judge)
    return judge, calls, tin, tout, [str(c) for c in at]


def judge_costs(jobs: list[Any]) -> dict[str, dict[str, Any]]:
    """Per judge (evals.judges name): calls, estimated tokens and cost over every judge job of a plan."""
    out: dict[str, dict[str, Any]] = {}
    costs: dict[int, Any] = {}  # id(benchmark config) -> its per-job cost: judge jobs share their configs
    for job in jobs:
        if job.stage != "judge":
            continue
        for name, b in job.config.benchmarks.items():
            cost = costs.get(id(b), _UNSET)
            if cost is _UNSET:
                cost = costs[id(b)] = _benchmark_cost(b)
            if cost is None:
                continue
            judge, calls, tin, tout, checkpoints = cost
            entry = out.get(judge.name)
            if entry is None:
                entry = out[judge.name] = {
                    "type": judge.type, "model": judge.model or judge.source,
                    "calls": 0, "input_tokens": 0.0, "output_tokens": 0.0, "benchmarks": {},
                    "price_per_million_tokens": to_json(judge.price_per_million_tokens)}  # plan --json's dict
            bench = entry["benchmarks"].get(name)
            if bench is None:
                bench = entry["benchmarks"][name] = {"calls": 0, "input_tokens": 0.0, "output_tokens": 0.0,
                                                     "checkpoints": set()}
            bench["checkpoints"].update(checkpoints)
            for e in (entry, bench):
                e["calls"] += calls
                e["input_tokens"] += calls * tin
                e["output_tokens"] += calls * tout
    for entry in out.values():
        for e in (entry, *entry["benchmarks"].values()):
            e["input_tokens"], e["output_tokens"] = round(e["input_tokens"]), round(e["output_tokens"])
        for bench in entry["benchmarks"].values():
            bench["checkpoints"] = sorted(bench["checkpoints"], key=lambda c: (c == "final", int(c) if c.isdigit() else 0))
        price = entry["price_per_million_tokens"]
        entry["cost_usd"] = (round((entry["input_tokens"] * price["input"] + entry["output_tokens"] * price["output"])
                                   / 1e6, 2) if price else None)
    return out
