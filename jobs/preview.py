"""The compute half of `alignkit preview`, run as a child process: `python -m jobs.preview`.

The login side (alignkit/cli/preview.py, preview_eval.py) imports no compute module, so it runs
this module in a child interpreter (alignkit/contract/entry.py names it) and reads its answer:
stdin  {"stage": "train" | "eval", "config": <config.json as a dict>, "n": N,
        "benchmark": B or null (eval), "context": the model's context length or null (eval)}
stdout the preview as JSON (the shapes alignkit/cli/preview.py and preview_eval.py document), or
       {"error": message} with exit 2 for a bad config or data (the login side raises it as a UserError;
       stderr is left to the libraries' own warnings).
Train: the first N examples exactly as the train job builds them (jobs.train.stage.load_examples);
eval: the first N prompts of each generating benchmark from its type's `prompts` hook, decoded from
the ids the generator receives (jobs.eval.generate.prompt_ids) with their new-token budget.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from alignkit.contract import ContractError
from alignkit.contract.eval import EvalConfig
from alignkit.contract import expect, parse
from alignkit.contract.train import TrainConfig
from alignkit.plugins import benchmarks as benchmarks_reg
from alignkit.plugins.methods import method as method_of
from jobs.errors import JobFailure


def train_preview(config: Any, n: int) -> dict:
    from jobs.train.stage import load_examples

    import datasets

    datasets.disable_progress_bars()  # stdout carries the preview, not map() bars
    expect(config, TrainConfig, "jobs.preview")
    method = method_of(config.method.type)
    data = load_examples(config, method)
    report = data.report
    dropped = report.dropped()
    # rows held out by validation.fraction come out of the kept rows too: say so, not "beyond_limit"
    val = config.dataset.validation
    held = (report.validation or {}).get("rows", 0) if val is not None and val.fraction is not None else 0
    if held:
        dropped["held_out_validation"] = held
    beyond = sum(p.kept for p in report.parts) - report.total - held  # rows the dataset's `limit` left out
    if beyond > 0:
        dropped["beyond_limit"] = beyond
    shown = []
    for i in range(min(n, len(data.dataset))):
        view = method.decode(data.dataset[i], data.tokenizer, config.method)
        shown.append({"row": data.kept[i], **view})
    return {"method": method.name, "rows_in": sum(p.rows for p in report.parts), "rows_kept": report.trained,
            "dropped": dropped, "examples": shown}


def eval_preview(config: Any, n: int, names: list[str], context: int | None) -> dict:
    from jobs.eval.generate import budget, prompt_ids
    from jobs.eval.stage import load_tokenizer

    expect(config, EvalConfig, "jobs.preview")
    tok = load_tokenizer(config.model, config.model.source)
    out: dict[str, list[dict]] = {}
    for name in names:
        b = config.benchmarks[name]
        prompts, max_new = benchmarks_reg.get(b.type).prompts(tok, name, b)
        shown = []
        for p in prompts[:n]:
            ids = prompt_ids(tok, p)
            shown.append({"prompt": tok.decode(ids, skip_special_tokens=False),
                          "prompt_tokens": len(ids), "max_new_tokens": budget(len(ids), max_new, context)})
        out[name] = shown
    return out


def main() -> int:
    # bitsandbytes logs a "pip install kernels" warning on import (a CPU kernel preview never uses)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    request = json.load(sys.stdin)
    try:
        config = parse(request["config"], "config")  # the one way from config.json's dict to a typed config
        if request["stage"] == "train":
            out = train_preview(config, request["n"])
        else:
            out = eval_preview(config, request["n"], request["benchmarks"], request["context"])
    except ContractError as exc:
        return _refuse(str(exc).splitlines()[0])
    except JobFailure as exc:
        return _refuse(str(exc))
    sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    return 0


def _refuse(message: str) -> int:
    sys.stdout.write(json.dumps({"error": message}, ensure_ascii=False) + "\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
