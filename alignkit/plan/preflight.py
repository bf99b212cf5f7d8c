"""Which models and datasets a study needs that a compute node without internet would not find.

Jobs run with HF_HUB_OFFLINE=1, so every hub model and dataset must already be in the Hugging
Face cache at its pinned revision (`alignkit prefetch` puts it there: alignkit/plan/prefetch.py).
Local paths must exist; the per-item rule is alignkit/contract/hub.py. The datasets lm-eval loads for its tasks (MMLU, BBH) are
read from lm-eval's own task configs (alignkit.plugins.benchmarks.lm_eval_run.task_datasets); offline, `datasets`
reloads a hub dataset only from its prepared copy in HF_DATASETS_CACHE, so that is what is
checked. Light at import time: huggingface_hub, datasets and lm_eval are imported inside the
checks only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.contract.hub import datasets_cache, is_local, lm_eval_hub, missing_assets, prepared
from alignkit.contract.lm_eval_needs import benchmark_needs, nltk_resources, task_needs


def spec_assets(jobs: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """The distinct models and datasets named by compiled jobs (manifest entries or bare configs).

    Covers each job's `model` and `dataset`, an external adapter target's `source` (targets:), a
    chained run's start adapter (a method's `init_from.adapter`),
    eval benchmarks' `source` (a dataset, at `revision`)
    and `classifier` (a model, at `classifier_revision`), and hf judges' `source` (a model). The
    datasets lm-eval tasks load are `lm_eval_datasets`'.
    """
    models: dict[tuple, dict] = {}
    datasets: dict[tuple, dict] = {}

    def add(into: dict, item: dict) -> None:
        ident = (item["source"], item.get("revision"), repr(sorted((item.get("subsets") or {}).items())),
                 repr(sorted((item.get("files") or {}).items())))
        into.setdefault(ident, item)

    for job in jobs:
        config = job.get("config", job)
        target_name = (config.get("axes") or {}).get("target")
        for key, into in (("model", models), ("dataset", datasets)):
            item = config.get(key)
            if isinstance(item, dict) and "source" in item:
                if key == "model" and target_name and (config.get("target") or {}).get("kind") == "base":
                    item = {**item, "name": f"target {target_name}"}  # a full-model target: named as the target
                add(into, item)
        target = config.get("target")
        if isinstance(target, dict) and target.get("kind") == "external" and isinstance(target.get("source"), str):
            add(models, {"name": f"target {target.get('name')}", "source": target["source"],
                         "revision": target.get("revision"), "adapter": True})
        init = config.get("init")  # a chained run started from an adapter that exists already
        if isinstance(init, dict) and isinstance(init.get("adapter"), str):
            add(models, {"name": f"init_from adapter of {(config.get('axes') or {}).get('method')}",
                         "source": init["adapter"], "revision": init.get("revision"), "adapter": True})
        for bench, spec in (config.get("benchmarks") or {}).items():
            if not isinstance(spec, dict):
                continue
            if isinstance(spec.get("source"), str):
                add(datasets, {"name": bench, "source": spec["source"], "revision": spec.get("revision")})
            if isinstance(spec.get("classifier"), str):
                add(models, {"name": f"{bench} classifier", "source": spec["classifier"],
                             "revision": spec.get("classifier_revision")})
            judge = spec.get("judge")
            if isinstance(judge, dict) and judge.get("type") == "hf" and isinstance(judge.get("source"), str):
                add(models, {"name": f"judge {judge.get('name', bench)}", "source": judge["source"],
                             "revision": judge.get("revision")})
    return list(models.values()), list(datasets.values())


# ---- the datasets lm-eval loads ----------------------------------------------------------------------

def lm_eval_datasets(jobs: list[dict[str, Any]], managers: dict | None = None) -> tuple[list[dict], list[str]]:
    """The datasets the lm_eval benchmarks of compiled jobs load, one per (path, config, kwargs):
    [{"benchmark", "task", "dataset_path", "dataset_name", "dataset_kwargs", "custom_dataset"}],
    and one line per benchmark whose task lm-eval does not know. `managers` keeps lm-eval's
    TaskManagers between calls (indexing its task tree takes seconds)."""
    wanted: dict[tuple, str] = {}
    for job in jobs:
        for bench, spec in ((job.get("config", job)).get("benchmarks") or {}).items():
            if isinstance(spec, dict) and spec.get("type") == "lm_eval" and spec.get("task"):
                wanted.setdefault((spec["task"], spec.get("include_path")), bench)
    if not wanted:
        return [], []
    from alignkit.plugins.benchmarks.lm_eval import task_datasets  # lm_eval: seconds to index its task tree

    out: dict[tuple, dict] = {}
    problems, cache = [], (managers if managers is not None else {})
    for (task, include), bench in wanted.items():
        if not include and task_needs(task):  # named by benchmark_needs; its code would not load here
            continue
        try:
            leaves = task_datasets(task, include, cache)
        except KeyError:
            problems.append(f"lm_eval {bench}: lm-eval knows no task or group {task!r}"
                            + (f" (built-in or under {include})" if include else ""))
            continue
        except ImportError as exc:  # a group's member, or a local task, whose code needs a package
            problems.append(f"lm_eval {bench}: task {task}'s code imports {exc.name or exc}, which is not "
                            f"installed here (lm-eval's extras: pip install 'lm-eval[tasks]')")
            continue
        for leaf in leaves:
            key = (leaf["dataset_path"], leaf["dataset_name"], repr(sorted(leaf["dataset_kwargs"].items())),
                   leaf["custom_dataset"] and leaf["task"])
            out.setdefault(key, {"benchmark": bench, **leaf})
    return list(out.values()), problems


def missing_lm_eval(leaves: list[dict]) -> list[str]:
    """One line per lm_eval benchmark and hub dataset whose configs an offline job would not find."""
    lines: list[str] = []
    absent: dict[tuple, list[str]] = {}
    total: dict[tuple, int] = {}
    cache = datasets_cache()
    for leaf in leaves:
        path, bench = leaf["dataset_path"], leaf["benchmark"]
        if leaf["custom_dataset"]:
            continue  # the task's own loader reads local files
        if not path:
            lines.append(f"lm_eval {bench}: task {leaf['task']} names no dataset_path; cannot check it offline")
        elif lm_eval_hub(leaf):
            total[(bench, path)] = total.get((bench, path), 0) + 1
            if not prepared(leaf, cache):
                absent.setdefault((bench, path), []).append(leaf["dataset_name"] or "(default config)")
        elif is_local(path) and not Path(path).expanduser().exists():
            lines.append(f"lm_eval {bench}: task {leaf['task']}: local path {path} does not exist")
    for (bench, path), names in absent.items():
        shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4 else "")
        lines.append(f"lm_eval {bench}: hub dataset {path}: {len(names)} of {total[(bench, path)]} configs are not "
                     f"in the datasets cache ({cache}): {shown}")
    return lines


def lm_eval_benchmarks(jobs: list[dict[str, Any]]) -> dict[str, dict]:
    """The lm_eval benchmarks of compiled jobs, by name (jobs share their benchmark configs)."""
    out: dict[str, dict] = {}
    seen: set[int] = set()
    for job in jobs:
        benchmarks = job.get("config", job).get("benchmarks") or {}
        if id(benchmarks) in seen:
            continue
        seen.add(id(benchmarks))
        for name, spec in benchmarks.items():
            if isinstance(spec, dict) and spec.get("type") == "lm_eval":
                out.setdefault(name, spec)
    return out


def study_assets(jobs: list[dict[str, Any]], managers: dict | None = None) -> dict[str, Any]:
    """Everything compiled jobs read: {"models", "datasets", "lm_eval" (task datasets), "unknown_tasks"
    (lines: tasks lm-eval does not know or whose code cannot be loaded here), "task_needs" (lines: the
    packages and data lm-eval tasks need that are missing), "nltk" (the nltk resources they load)}."""
    models, datasets = spec_assets(jobs)
    benchmarks = lm_eval_benchmarks(jobs)
    leaves, unknown = lm_eval_datasets(jobs, managers)
    nltk = sorted({r for b in benchmarks.values() if not b.get("include_path") for r in nltk_resources(str(b["task"]))})
    return {"models": models, "datasets": datasets, "lm_eval": leaves, "unknown_tasks": unknown,
            "task_needs": [f"lm_eval {name}: {line}" for name, line in benchmark_needs(benchmarks)], "nltk": nltk}


def study_problems(assets: dict[str, Any]) -> tuple[str, list[str]]:
    """What of `study_assets` an offline compute node would not find: (what was checked, one line each)."""
    problems = (missing_assets(assets["models"], assets["datasets"]) + assets["task_needs"]
                + assets["unknown_tasks"] + missing_lm_eval(assets["lm_eval"]))
    hub = {(leaf["dataset_path"], leaf["dataset_name"]) for leaf in assets["lm_eval"] if lm_eval_hub(leaf)}
    return (f"{len(assets['models'])} models, {len(assets['datasets'])} datasets and {len(hub)} lm-eval dataset "
            f"configs checked", problems)
