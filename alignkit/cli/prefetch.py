"""`alignkit prefetch SPEC`: download every model and dataset a study needs, on the login node.

Compute nodes often have no internet; jobs run with HF_HUB_OFFLINE=1 and read the Hugging Face
cache (put HF_HOME on the shared filesystem). `--check` only lists what is missing (exit 2 if
anything is), which is the same check `alignkit submit` runs before queueing anything.
"""

from __future__ import annotations

import argparse

from alignkit.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prefetch", help="download the study's models and datasets into the HF cache",
                       description="Download every model and dataset a sweep spec names, at its pinned revision, "
                                   "into the Hugging Face cache (run on a node with internet).")
    p.add_argument("spec", help="sweep spec YAML file")
    p.add_argument("--check", action="store_true", help="only list what is missing; download nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.compile import load_plan
    from alignkit.preflight import missing_assets, spec_assets

    plan = load_plan(args.spec)
    models, datasets = spec_assets([j.to_json() for j in plan.jobs])
    missing = missing_assets(models, datasets)
    if args.check:
        for line in missing:
            print(f"missing: {line}")
        print(f"{len(models)} models and {len(datasets)} datasets checked, {len(missing)} missing")
        return 2 if missing else 0
    from jobs.prefetch import prefetch  # heavy (huggingface_hub): only when actually downloading

    try:
        prefetch(models, datasets, progress=lambda line: print(line, flush=True))
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    still = missing_assets(models, datasets)
    if still:
        raise UserError("\n".join(["still missing after prefetch:", *still]))
    print(f"all {len(models)} models and {len(datasets)} datasets are in the cache")
    return 0
