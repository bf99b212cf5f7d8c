"""Which models and datasets a study needs that a compute node without internet would not find.

Jobs run with HF_HUB_OFFLINE=1, so every hub model and dataset must already be in the Hugging
Face cache at its pinned revision (`alignkit prefetch` puts it there; `jobs/prefetch.py` does the
downloading). Local paths must exist. Light at import time: huggingface_hub is imported inside
the check only. `dataset_allow_patterns` is shared with the prefetch and the job-side loader, so
all three agree on which files of a dataset repo make it complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# metadata a dataset repo's loader reads (README configs, dataset_info), fetched with any subset
DATASET_METADATA = ["*.md", "*.json", "*.yaml", ".gitattributes"]
WEIGHTS = (".safetensors", ".bin")


def is_local(source: str) -> bool:
    """Local path (the compiler makes these absolute) rather than a hub id like "org/name"."""
    return source.startswith(("/", "./", "../", "~")) or os.path.exists(source)


def dataset_allow_patterns(dataset: dict) -> list[str] | None:
    """Files of a hub dataset repo the study reads: its subsets' folders, or all (None)."""
    subsets = dataset.get("subsets")
    if not subsets:
        return None
    return [f"{d.strip('/')}/*" for d in sorted(set(subsets.values()))] + DATASET_METADATA


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
    revision = item.get("revision") or "main"
    if is_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            return f"{kind} {name}: local path {source} does not exist"
        if kind == "model" and path.is_dir() and not (path / "config.json").exists():
            return f"{kind} {name}: local path {source} has no config.json (not a Hugging Face model folder)"
        return None
    where = f"{kind} {name}: {source}@{revision}"
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError
    except ImportError:
        return f"{where}: cannot check the Hugging Face cache (huggingface_hub is not installed)"
    patterns = ["config.json"] if kind == "model" else dataset_allow_patterns(item)
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
        if not (folder / "config.json").exists():
            return f"{where} is in the Hugging Face cache without config.json"
        if not any(p.name.endswith(WEIGHTS) for p in folder.rglob("*")):
            return f"{where} is in the Hugging Face cache without weights (*.safetensors or *.bin)"
    else:
        for sub in sorted(set((item.get("subsets") or {}).values())):
            if not (folder / sub).is_dir():
                return f"{where} is in the Hugging Face cache without its subset folder {sub}/"
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def spec_assets(jobs: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """The distinct models and datasets named by compiled jobs (manifest entries or bare configs).

    Covers each job's `model` and `dataset`, and eval benchmarks' `source` (a dataset) and
    `classifier` (a model). Not covered: the datasets lm-eval tasks download themselves.
    """
    models: dict[tuple, dict] = {}
    datasets: dict[tuple, dict] = {}

    def add(into: dict, item: dict) -> None:
        ident = (item["source"], item.get("revision"), repr(sorted((item.get("subsets") or {}).items())))
        into.setdefault(ident, item)

    for job in jobs:
        config = job.get("config", job)
        for key, into in (("model", models), ("dataset", datasets)):
            item = config.get(key)
            if isinstance(item, dict) and "source" in item:
                add(into, item)
        for bench, spec in (config.get("benchmarks") or {}).items():
            if not isinstance(spec, dict):
                continue
            if isinstance(spec.get("source"), str):
                add(datasets, {"name": bench, "source": spec["source"], "revision": spec.get("revision")})
            if isinstance(spec.get("classifier"), str):
                add(models, {"name": f"{bench} classifier", "source": spec["classifier"],
                             "revision": spec.get("classifier_revision")})
    return list(models.values()), list(datasets.values())
