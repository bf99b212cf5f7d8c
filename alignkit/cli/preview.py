"""`alignkit preview SPEC --job NAME_OR_ID [--n N] [--json]`: the first N examples of one training
job exactly as its trainer receives them, after templating and truncation, with the loss-bearing
text marked (like axolotl's `preprocess --debug`).

It builds them with the training job's own code (jobs.train.stage.load_examples: data, tokenizer,
template, truncation, masks) in a child process, `python -m jobs.preview` (this module imports no
compute module: docs/architecture.md), and reads only the tokenizer and the data, no model, so it
runs on a login node. JSON: {"job", "method", "rows_in", "rows_kept", "dropped": {reason: n}, "examples"};
each example {"row", ...the method's decoded fields (Method.decode): SFT "text", "loss_text";
DPO "prompt", "chosen", "rejected"};
"row" is the example's index in the job's (seeded, shuffled) rows, so a dropped row leaves a gap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from alignkit.contract.errors import UserError

DEFAULT_N = 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="show a training job's first examples as the trainer sees them",
                       description="Decode the first N training examples of one training job after templating "
                                   "and truncation, marking the text that carries loss. Reads only the tokenizer "
                                   "and the data.")
    p.add_argument("spec", help="sweep spec YAML file")
    p.add_argument("--job", required=True, metavar="NAME_OR_ID",
                   help="a training or eval job's name, id or unique id prefix (see alignkit plan --json); "
                        "an eval job shows the prompts its generating benchmarks send")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"number of examples (default {DEFAULT_N})")
    p.add_argument("--benchmark", metavar="B", help="an eval job's benchmark (default: every generating one)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(run=run)


def find_job(jobs: list, selector: str):
    """The one training job named `selector` (name, id, or a unique id prefix)."""
    hits = [j for j in jobs if selector in (j.id, j.name)] or [j for j in jobs if j.id.startswith(selector)]
    if not hits:
        raise UserError(f"--job: no job matches '{selector}' (give a training job's name, id or id prefix; "
                        f"see alignkit plan --json)")
    if len(hits) > 1:
        raise UserError(f"--job: '{selector}' matches {len(hits)} jobs ({', '.join(j.id for j in hits[:4])}"
                        f"{', ...' if len(hits) > 4 else ''}); give more of the id")
    if hits[0].stage not in ("train", "eval"):
        raise UserError(f"--job: {hits[0].name} is not a training or eval job (stage {hits[0].stage}); "
                        f"preview shows training jobs and eval jobs' prompts")
    return hits[0]


TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "config.json")


def not_cached(config: dict) -> list[str]:
    """What preview would find missing, checked with huggingface_hub alone: the job's dataset
    (as `submit`'s preflight checks it) and its model's tokenizer files (no weights needed)."""
    from alignkit.contract.hub import is_local, missing_assets
    out = missing_assets([], [config["dataset"]]) if isinstance(config.get("dataset"), dict) else []
    model = config.get("model") or {}
    source, name, revision = str(model.get("source", "")), model.get("name", model.get("source")), \
        model.get("revision") or "main"
    if not source:
        return out
    if is_local(source):
        if not Path(source).expanduser().exists():
            out.append(f"model {name}: local path {source} does not exist")
        return out
    try:
        from huggingface_hub import constants, snapshot_download
        folder = Path(snapshot_download(source, revision=revision, local_files_only=True,
                                        allow_patterns=list(TOKENIZER_FILES)))
    except Exception:  # LocalEntryNotFoundError, or a broken entry: not usable offline either way
        from huggingface_hub import constants
        return out + [f"model {name}: {source}@{revision}: its tokenizer is not in the Hugging Face cache "
                      f"({constants.HF_HUB_CACHE})"]
    if not any((folder / f).exists() for f in TOKENIZER_FILES[:3]):
        out.append(f"model {name}: {source}@{revision} is in the Hugging Face cache without tokenizer files")
    return out


def preview(config: Any, n: int) -> dict:
    """The preview of one train config (docs/contract.md "train"; typed or as config.json holds it),
    built by the train job's own code in a child process (jobs/preview.py)."""
    from alignkit.contract import entry, to_dict

    return entry.run_preview({"stage": "train", "config": config if isinstance(config, dict) else to_dict(config),
                              "n": n})


def run(args: argparse.Namespace) -> int:
    from alignkit.plan.compiler import load_plan  # lazily: every `alignkit` command imports this module

    if args.n < 0:
        raise UserError(f"--n: must be 0 or more, got {args.n}")
    plan = load_plan(args.spec)
    job = find_job([*plan.jobs, *plan.awaiting], args.job)  # a selected benchmark's eval too
    if job.stage == "eval":  # the prompts an eval job sends (its own module)
        from alignkit.cli import preview_eval

        return preview_eval.run(args, job)
    if args.benchmark is not None:
        raise UserError("--benchmark: only for an eval job")
    from alignkit.contract import to_dict

    missing = not_cached(to_dict(job.config))  # before importing the training stack (~4 s): answer at once
    if missing:
        raise UserError("\n".join([f"preview needs the tokenizer and the data offline; run `alignkit prefetch "
                                    f"{args.spec}` first:", *[f"  missing: {m}" for m in missing]]))
    out = {"job": job.id, **preview(job.config, args.n)}
    if args.json:
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        return 0
    why = ", ".join(f"{k}={v}" for k, v in sorted(out["dropped"].items()))
    lines = [f"job {job.id} {job.name} ({out['method']}): {out['rows_in']} rows in, {out['rows_kept']} kept"
             + (f" (dropped: {why})" if why else "")]
    for i, ex in enumerate(out["examples"], 1):
        lines.append(f"--- example {i} (row {ex['row']})")
        for key in (k for k in ex if k != "row"):  # the method's decoded fields, in its order
            # repr keeps leading spaces and newlines visible: they are part of what trains
            lines.append(f"{key}{' (carries the loss)' if key == 'loss_text' else ''}: {ex[key]!r}")
    print("\n".join(lines))
    return 0
