"""Which models and datasets a study needs that a compute node without internet would not find.

Jobs run with HF_HUB_OFFLINE=1, so every hub model and dataset must already be in the Hugging
Face cache at its pinned revision (`alignkit prefetch` puts it there; `jobs/prefetch.py` does the
downloading). Local paths must exist. The datasets lm-eval loads for its tasks (MMLU, BBH) are
read from lm-eval's own task configs (jobs.lm_eval_adapter.task_datasets); offline, `datasets`
reloads a hub dataset only from its prepared copy in HF_DATASETS_CACHE, so that is what is
checked. Light at import time: huggingface_hub, datasets and lm_eval are imported inside the
checks only. `dataset_allow_patterns` is shared with the prefetch and the job-side loader, so
all three agree on which files of a dataset repo make it complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alignkit.contract.lm_eval_needs import benchmark_needs, nltk_resources, task_needs

# metadata a dataset repo's loader reads (README configs, dataset_info), fetched with any subset
DATASET_METADATA = ["*.md", "*.json", "*.yaml", ".gitattributes"]
WEIGHTS = (".safetensors", ".bin")


def is_local(source: str) -> bool:
    """Local path (the compiler makes these absolute) rather than a hub id like "org/name"."""
    return source.startswith(("/", "./", "../", "~")) or os.path.exists(source)


def data_dirs(dataset: dict) -> list[str]:
    """The folders of a hub dataset repo a study reads: its subsets' (HH-RLHF style) and the hub
    data_dirs among its per-preference `files` (a local file there is checked as itself)."""
    dirs = set((dataset.get("subsets") or {}).values())
    dirs |= {f for f in (dataset.get("files") or {}).values() if not is_local(f)}
    return sorted(dirs)


def dataset_allow_patterns(dataset: dict) -> list[str] | None:
    """Files of a hub dataset repo the study reads: its data_dirs' folders, or all (None)."""
    dirs = data_dirs(dataset)
    if not dirs:
        return None
    return [f"{d.strip('/')}/*" for d in dirs] + DATASET_METADATA


def missing_assets(models: list[dict], datasets: list[dict]) -> list[str]:
    """One line per model or dataset that is neither a local path that exists nor in the HF cache."""
    problems = []
    for model in models:
        problem = _check(model, "model")
        if problem:
            problems.append(problem)
    for dataset in datasets:
        problem = _check(dataset, "dataset")
        if problem:
            problems.append(problem)
    return problems


def _check(item: dict, kind: str) -> str | None:
    source, name = str(item["source"]), item.get("name", item["source"])
    # an evaluated adapter (targets:) is a PEFT folder: adapter_config.json and adapter weights
    marker, what = ("adapter_config.json", "PEFT adapter") if item.get("adapter") else ("config.json", "model")
    revision = item.get("revision") or "main"
    if is_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            return f"{kind} {name}: local path {source} does not exist"
        if kind == "model" and not path.is_dir():  # /etc/passwd is no model: refused here, not on the cluster
            return f"{kind} {name}: local path {source} is a file, not a Hugging Face {what} folder"
        if kind == "model" and path.is_dir() and not (path / marker).exists():
            return f"{kind} {name}: local path {source} has no {marker} (not a Hugging Face {what} folder)"
        return None
    where = f"{kind} {name}: {source}@{revision}"
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError
    except ImportError:
        return f"{where}: cannot check the Hugging Face cache (huggingface_hub is not installed)"
    patterns = [marker] if kind == "model" else dataset_allow_patterns(item)
    try:
        folder = Path(snapshot_download(source, repo_type=kind, revision=revision, local_files_only=True,
                                        allow_patterns=patterns))
    except IncompleteSnapshotError as exc:  # an interrupted download
        return f"{where} is incomplete in the Hugging Face cache: {_first_line(exc)}"
    except LocalEntryNotFoundError:
        return f"{where} is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    except Exception as exc:  # a broken cache entry
        return f"{where}: cannot read the Hugging Face cache: {type(exc).__name__}: {_first_line(exc)}"
    if kind == "model":
        if not (folder / marker).exists():
            return f"{where} is in the Hugging Face cache without {marker}"
        if not any(p.name.endswith(WEIGHTS) for p in folder.rglob("*")):
            return f"{where} is in the Hugging Face cache without weights (*.safetensors or *.bin)"
    else:
        for sub in data_dirs(item):
            if not (folder / sub).is_dir():
                return f"{where} is in the Hugging Face cache without its subset folder {sub}/"
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def spec_assets(jobs: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """The distinct models and datasets named by compiled jobs (manifest entries or bare configs).

    Covers each job's `model` and `dataset`, an external adapter target's `source` (targets:),
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
    from jobs.lm_eval_adapter import task_datasets  # lm_eval: seconds to index its task tree

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


def datasets_cache() -> Path:
    """HF_DATASETS_CACHE as `datasets` resolves it (datasets/config.py), read now rather than at import."""
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.environ.get("HF_DATASETS_CACHE") or os.path.join(os.path.expanduser(home), "datasets")).expanduser()


def lm_eval_hub(leaf: dict) -> bool:
    """A dataset the task loads from the hub: not its own loader, a packaged builder or a local folder."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES  # json, csv, parquet, ...

    path = leaf["dataset_path"]
    return bool(path) and not leaf["custom_dataset"] and not is_local(path) and path not in _PACKAGED_DATASETS_MODULES


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


def prepared(leaf: dict, cache: Path) -> bool:
    """Whether `datasets`' offline fallback (packaged_modules/cache: _find_hash_in_cache) finds this config."""
    from datasets.packaged_modules.cache.cache import _find_hash_in_cache

    kwargs = {k: v for k, v in leaf["dataset_kwargs"].items() if k in ("data_dir", "data_files")}
    try:
        _find_hash_in_cache(dataset_name=leaf["dataset_path"], config_name=leaf["dataset_name"],
                            cache_dir=str(cache), config_kwargs=kwargs, custom_features=None)
    except (ValueError, FileNotFoundError, KeyError, OSError):
        return False
    return True


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
