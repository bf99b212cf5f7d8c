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
    # a two-phase study's jobs waiting for the selection too: their data is fetched with the rest
    jobs, managers = [j.to_json() for j in [*plan.jobs, *plan.awaiting]], {}
    assets = study_assets(jobs, managers)
    checked, missing = study_problems(assets)
    if args.check:
        for line in missing:
            print(f"missing: {line}")
        print(f"{checked}, {len(missing)} missing")
        return 2 if missing else 0
    if assets["nltk"]:  # before the task configs are read again: IFEval's code looks its data up on import
        download_nltk(assets["nltk"])
        assets = study_assets(jobs, managers)
    if assets["unknown_tasks"] or assets["task_needs"]:
        raise UserError("\n".join(assets["task_needs"] + assets["unknown_tasks"]))
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


def download_nltk(resources: list[str]) -> None:
    """Download the nltk data lm-eval tasks load (IFEval: tokenizers/punkt_tab) where nltk looks first:
    $NLTK_DATA's first folder, else nltk's default (~/nltk_data). Jobs read it from there, so put it on
    the shared filesystem (NLTK_DATA set the same way for the jobs)."""
    import os

    import nltk

    target = (os.environ.get("NLTK_DATA") or "").split(os.pathsep)[0] or None
    for resource in resources:
        try:
            nltk.data.find(resource)
            continue
        except LookupError:
            pass
        package = resource.rstrip("/").rsplit("/", 1)[-1]
        print(f"downloading nltk data {package} into {target or nltk.downloader.Downloader().default_download_dir()}",
              flush=True)
        try:
            nltk.download(package, download_dir=target, quiet=True, raise_on_error=True)
        except (ValueError, OSError) as exc:
            raise UserError(f"nltk data {resource}: download failed: "
                            f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from None
