"""`alignkit prefetch SPEC`: download every model and dataset a study needs, on the login node.

That includes the benchmarks' data, classifier and hf judges, and the datasets lm-eval's tasks
load (read from lm-eval's task configs, prepared the way lm-eval loads them).

Compute nodes often have no internet; jobs run with HF_HUB_OFFLINE=1 and read the Hugging Face
cache (put HF_HOME on the shared filesystem). `--check` only lists what is missing (exit 2 if
anything is), which is the same check `alignkit submit` runs before queueing anything.
"""

from __future__ import annotations

import argparse

from alignkit.contract.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prefetch", help="download the study's models and datasets into the HF cache",
                       description="Download every model and dataset a sweep spec names, at its pinned revision, "
                                   "into the Hugging Face cache (run on a node with internet).")
    p.add_argument("spec", help="sweep spec YAML file")
    p.add_argument("--check", action="store_true", help="only list what is missing; download nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.plan.compiler import load_plan
    from alignkit.plan.preflight import study_assets, study_problems

    plan = load_plan(args.spec)
    assets = study_assets([j.to_json() for j in plan.jobs])
    checked, missing = study_problems(assets)
    if args.check:
        for line in missing:
            print(f"missing: {line}")
        print(f"{checked}, {len(missing)} missing")
        return 2 if missing else 0
    if assets["unknown_tasks"]:
        raise UserError("\n".join(assets["unknown_tasks"]))
    from alignkit.plan.prefetch import prefetch, prefetch_lm_eval  # heavy (huggingface_hub, datasets): only when downloading

    try:
        prefetch(assets["models"], assets["datasets"], progress=lambda line: print(line, flush=True))
        prefetch_lm_eval(assets["lm_eval"], progress=lambda line: print(line, flush=True))
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    checked, still = study_problems(assets)
    if still:
        raise UserError("\n".join(["still missing after prefetch:", *still]))
    print(f"all in the cache: {checked}")
    return 0
