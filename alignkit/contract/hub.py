"""What the Hugging Face cache must hold for a model or dataset: the rule both halves share.

Jobs run with HF_HUB_OFFLINE=1, so every hub model and dataset must already be in the Hugging
Face cache at its pinned revision. The login side checks it (alignkit/plan/preflight.py) and fills
it (alignkit/plan/prefetch.py); the job-side loader reads it (jobs/data). `dataset_allow_patterns`
is shared by all three, so they agree on which files of a dataset repo make it complete; offline,
`datasets` reloads a hub dataset only from its prepared copy in HF_DATASETS_CACHE (`prepared`).
torch-free; huggingface_hub and datasets are imported inside the checks only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

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


def _hf_home() -> str:
    return os.path.expanduser(os.environ.get("HF_HOME")
                              or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"))


def datasets_cache() -> Path:
    """HF_DATASETS_CACHE as `datasets` resolves it (datasets/config.py), read now rather than at import."""
    return Path(os.environ.get("HF_DATASETS_CACHE") or os.path.join(_hf_home(), "datasets")).expanduser()


def hub_snapshot(source: str, revision: str, kind: str) -> Optional[Path]:
    """The cached snapshot folder of a hub repo (kind "model" or "dataset"), found by path alone as
    huggingface_hub lays the cache out (HF_HUB_CACHE, else HF_HOME/hub): nothing imported or downloaded."""
    cache = Path(os.environ.get("HF_HUB_CACHE") or os.path.join(_hf_home(), "hub")).expanduser()
    repo = cache / f"{kind}s--{source.replace('/', '--')}"
    ref = repo / "refs" / revision
    snap = repo / "snapshots" / (ref.read_text().strip() if ref.is_file() else revision)
    return snap if snap.is_dir() else None


def lm_eval_hub(leaf: dict) -> bool:
    """A dataset the task loads from the hub: not its own loader, a packaged builder or a local folder."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES  # json, csv, parquet, ...

    path = leaf["dataset_path"]
    return bool(path) and not leaf["custom_dataset"] and not is_local(path) and path not in _PACKAGED_DATASETS_MODULES


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
