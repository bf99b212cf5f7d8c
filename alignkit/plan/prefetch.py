"""Download what a study needs into the Hugging Face cache, at the pinned revisions.

Runs on a machine with internet (the login node: `alignkit prefetch SPEC` calls `prefetch`
lazily) so that compute nodes, which run with HF_HUB_OFFLINE=1, find everything in the cache.
Models: the whole repo except formats transformers does not load (original checkpoints, other
frameworks' weights, and *.bin when the repo has *.safetensors). Datasets: the subsets' folders
only when the dataset names subsets (alignkit.contract.hub.dataset_allow_patterns, the same
patterns the offline check and the job-side loader use), else the whole repo. lm-eval's datasets:
each hub config a task loads, through `datasets.load_dataset` with the task config's arguments
(alignkit.plugins.benchmarks.lm_eval.load_task_dataset), which leaves the prepared copy that `datasets` reloads
offline in HF_DATASETS_CACHE.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

from alignkit.contract.hub import (dataset_allow_patterns, datasets_cache, is_local, lm_eval_hub, missing_assets,
                                   prepared)

MODEL_IGNORE = ["*.pth", "*.pt", "consolidated*", "original/*", "*.msgpack", "*.h5", "*.ot", "*.onnx",
                "*.gguf", "*.tflite", "*.mlmodel", "coreml/*", "onnx/*"]


def model_ignore_patterns(files: list[str]) -> list[str]:
    """Weights transformers would not read: PyTorch *.bin when the repo also has safetensors."""
    ignore = list(MODEL_IGNORE)
    if any(f.endswith(".safetensors") for f in files if not any(fnmatch.fnmatch(f, p) for p in ignore)):
        ignore.append("*.bin")
    return ignore


def prefetch(models: list[dict], datasets: list[dict], progress: Callable[[str], None] = print) -> list[str]:
    """Download every hub model and dataset not already cached; return their local snapshot folders.

    Raises RuntimeError with a one-line reason naming the model or dataset that failed.
    """
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi()
    missing = set(missing_assets(models, datasets))
    folders = []
    for kind, items in (("model", models), ("dataset", datasets)):
        for item in items:
            source, revision = str(item["source"]), item.get("revision") or "main"
            name = item.get("name", source)
            if is_local(source):
                progress(f"{kind} {name}: local path {source}, nothing to download")
                continue
            kwargs: dict = {"repo_type": kind, "revision": revision}
            if kind == "dataset":
                kwargs["allow_patterns"] = dataset_allow_patterns(item)
            try:
                if kind == "model":
                    files = api.list_repo_files(source, revision=revision)
                    kwargs["ignore_patterns"] = model_ignore_patterns(files)
                already = not any(line.startswith(f"{kind} {name}:") for line in missing)
                progress(f"{kind} {name}: {source}@{revision} " + ("(cached, verifying)" if already else "downloading"))
                folder = snapshot_download(source, **kwargs)
            except Exception as exc:  # network, auth, unknown repo or revision: one line, naming it
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise RuntimeError(f"{kind} {name}: cannot download {source}@{revision}: "
                                   f"{type(exc).__name__}: {first}") from None
            progress(f"{kind} {name}: {source}@{revision} -> {folder}")
            folders.append(folder)
    return folders


def prefetch_lm_eval(leaves: list[dict], progress: Callable[[str], None] = print) -> int:
    """Prepare every hub dataset config the lm-eval tasks load (alignkit.plan.preflight.lm_eval_datasets)
    that is not in the datasets cache yet; return how many were downloaded.

    Raises RuntimeError with a one-line reason naming the benchmark, dataset and config that failed.
    """
    from alignkit.plugins.benchmarks.lm_eval import load_task_dataset

    cache, done = datasets_cache(), 0
    for leaf in leaves:
        what = f"lm_eval {leaf['benchmark']}: task {leaf['task']}"
        if not lm_eval_hub(leaf):
            progress(f"{what}: {'its own loader' if leaf['custom_dataset'] else leaf['dataset_path']} reads local "
                     f"files, nothing to download")
            continue
        where = f"{leaf['dataset_path']}" + (f" config {leaf['dataset_name']}" if leaf["dataset_name"] else "")
        if prepared(leaf, cache):
            progress(f"{what}: {where} is in the datasets cache")
            continue
        progress(f"{what}: {where} downloading")
        try:
            load_task_dataset(leaf, cache_dir=str(cache))
        except Exception as exc:  # network, auth, unknown repo or config: one line, naming it
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeError(f"{what}: cannot download {where}: {type(exc).__name__}: {first}") from None
        done += 1
    return done
