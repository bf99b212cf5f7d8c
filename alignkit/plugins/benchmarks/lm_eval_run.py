"""A thin wrapper over lm-evaluation-harness 0.4.13: one benchmark config in, one result dict out.

lm-eval changes its result layout between releases; everything that reads its output lives here.
The model is the caller's already-loaded model (base + active adapter, or a merged model), wrapped
in `HFLM(pretrained=model, tokenizer=tok)`, so swapping adapters never reloads the base.

A benchmark config (docs/contract.md, eval), typed (alignkit.plugins.benchmarks.config_class()):
  type "lm_eval", task "mmlu" | "<local task name>", include_path "<task dir>" | None,
  num_fewshot 5 | None, metric "acc", filter "none" | None, limit None, chat_template False
(resolved at compile time). Not spec keys, fixed here: few-shot examples as a multi-turn chat exactly
when the chat template is applied, BOOTSTRAP_ITERS for the stderr, and the batch size below.
"""

from __future__ import annotations

from copy import deepcopy
import math
from pathlib import Path
from typing import Any

from alignkit.contract.lm_eval_needs import task_needs
from jobs.errors import JobFailure

BOOTSTRAP_ITERS = 1000  # simple_evaluate's bootstrap for stderrs of non-mean metrics (its own default: 100000)


def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def _metric_key(results: dict, task: str, metric: str, filt: str | None) -> str:
    """Pick "<metric>,<filter>" from lm-eval's per-task result: the named filter, else 'none', else the only one."""
    keys = [k for k in results if k.split(",")[0] == metric and "_stderr" not in k]
    if filt is not None:
        key = f"{metric},{filt}"
        if key in results:
            return key
    elif f"{metric},none" in results:
        return f"{metric},none"
    elif len(keys) == 1:
        return keys[0]
    raise JobFailure(
        f"lm-eval task {task}: no metric {metric!r}{' with filter ' + repr(filt) if filt else ''} "
        f"in its results (has {', '.join(sorted(k for k in results if k != 'alias')) or 'none'}); "
        f"set 'metric' and 'filter' in the benchmark")


def _number(value: Any) -> float | None:
    """lm-eval writes "N/A" (or NaN) where it has no stderr."""
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def task_manager(include_path: str | None, task: str, cache: dict) -> Any:
    """A TaskManager that knows `task`, built once per job: indexing lm-eval's whole task tree
    takes seconds, so a task found in the local folder alone is served without it, and the whole
    tree is indexed once for every task that needs it."""
    from lm_eval.tasks import TaskManager

    if include_path:
        if ("local", include_path) not in cache:
            cache[("local", include_path)] = TaskManager(include_path=include_path, include_defaults=False)
        if task in cache[("local", include_path)].task_index:
            return cache[("local", include_path)]
    if ("all", include_path) not in cache:
        cache[("all", include_path)] = TaskManager(include_path=include_path)
    return cache[("all", include_path)]


def run_benchmark(model: Any, tokenizer: Any, name: str, cfg: Any, *, device: str,
                  task_managers: dict | None = None, batch_size: int | str | None = None) -> dict:
    """Evaluate one lm-eval benchmark (cfg: its typed config) on `model`; return its eval.json entry.
    batch_size: None (the job) = "auto" on CUDA, 8 on CPU; bench/gpu_jobs.py compares 1 with 8.

    Entry: {"metric": "acc", "acc": v, "acc_stderr": v|None, "n": count, "metric_key": "acc,none",
            "task": ..., "num_fewshot": ..., "chat_template": bool, "task_versions": {...},
            "limit": ...}
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    task, metric, include = cfg.task, cfg.metric, cfg.include_path
    if not task or not metric:
        raise JobFailure(f"benchmarks.{name}: an lm_eval benchmark needs 'task' and 'metric'")
    chat = bool(cfg.chat_template)  # resolved at compile time (lm_eval.resolve)
    # lm-eval's "auto" probes the largest batch that fits the GPU; on CPU that probe costs more than it saves.
    batch = batch_size if batch_size is not None else ("auto" if device.startswith("cuda") else 8)

    if include and not Path(include).is_dir():
        raise JobFailure(f"benchmarks.{name}.include_path: {include} is not a directory")
    need = None if include else task_needs(task)  # its code would fail to import, or try to download
    if need:
        raise JobFailure(f"benchmarks.{name}: lm-eval task {task} needs {need}")
    tm = task_manager(include, task, task_managers if task_managers is not None else {})
    if task not in tm.task_index:
        raise JobFailure(f"benchmarks.{name}.task: lm-eval knows no task or group {task!r}"
                         f"{' (built-in tasks or ' + str(include) + ')' if include else ''}")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch, max_batch_size=64, device=device)
    out = lm_eval.simple_evaluate(
        model=lm, tasks=[task], task_manager=tm, num_fewshot=cfg.num_fewshot,
        limit=cfg.limit, apply_chat_template=chat, fewshot_as_multiturn=chat,
        bootstrap_iters=BOOTSTRAP_ITERS, log_samples=False,
        confirm_run_unsafe_code=False)
    results = out["results"]
    if task not in results:
        raise JobFailure(f"benchmarks.{name}: lm-eval returned no result for task {task!r}")
    key = _metric_key(results[task], task, metric, cfg.filter)
    value = _number(results[task][key])
    if value is None:
        raise JobFailure(f"benchmarks.{name}: lm-eval gave no number for {key} on {task}")
    stderr_key = key.replace(",", "_stderr,", 1)
    # n-samples holds only leaf tasks; one benchmark per simple_evaluate call, so all of them are ours.
    n = sum(int(v.get("effective", 0)) for v in out.get("n-samples", {}).values())
    shots = out.get("n-shot", {})
    return {
        "metric": metric, metric: value, f"{metric}_stderr": _number(results[task].get(stderr_key)),
        "n": n, "metric_key": key, "task": task, "include_path": include,
        "num_fewshot": shots.get(task, max(shots.values(), default=None) if shots else None),
        "num_fewshot_per_task": dict(shots), "chat_template": chat, "limit": cfg.limit,
        "task_versions": {k: v for k, v in out.get("versions", {}).items()},
    }


# ---- which datasets a task loads (for prefetch and the offline preflight) ---------------------------
# lm-eval's ConfigurableTask downloads its dataset when it is built (api/task.py: `download` calls
# datasets.load_dataset(path=dataset_path, name=dataset_name, **dataset_kwargs)), so the configs are
# read the way TaskManager.load builds them (tasks/_factory.py: TaskFactory.build, _build_group,
# _build_group_members, _load_full_config) without building any task.


def task_datasets(task: str, include_path: str | None, cache: dict | None = None) -> list[dict]:
    """Every leaf task of lm-eval task/group/tag `task` and the dataset it loads, from its task configs:
    [{"task", "dataset_path", "dataset_name", "dataset_kwargs", "custom_dataset": bool}], in task order.

    Raises KeyError when lm-eval knows no such task (built-in or under include_path)."""
    tm = task_manager(include_path, task, cache if cache is not None else {})
    if task not in tm.task_index:
        raise KeyError(task)
    leaves: dict[str, dict] = {}
    _walk(tm, task, None, leaves)
    return list(leaves.values())


def _config(factory: Any, entry: Any, overrides: dict | None) -> dict:
    """The entry's config as TaskFactory._load_full_config reads it, except that the `!function` tags
    of a task config outside lm-eval's own package (an include_path's) stay the paths they name: plan,
    submit's preflight and prefetch read task configs without importing their Python; only the
    eval job runs task code. (lm-eval's own index reads configs this way: tasks/_index.py.)"""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    path = getattr(entry, "yaml_path", None)
    if not path or Path(lm_eval.__file__).resolve().parent in Path(path).resolve().parents:
        return factory._load_full_config(entry, overrides)  # lm-eval's installed task code is trusted
    return {**deepcopy(load_yaml(path, resolve_func=False)), **(overrides or {})}


def _walk(tm: Any, name: str, overrides: dict | None, leaves: dict[str, dict]) -> None:
    from lm_eval.tasks._factory import GROUP_FIELD_NAMES
    from lm_eval.tasks._index import Kind

    registry = tm.task_index
    entry = registry[name]
    factory = tm._factory
    if entry.kind == Kind.TAG:  # a tag: its tasks, each with the caller's overrides
        for child in sorted(entry.tags):
            if child in registry:
                _walk(tm, child, overrides, leaves)
        return
    if entry.kind == Kind.GROUP:
        raw = _config(factory, entry, None)
        _members(tm, name, raw, {**{k: v for k, v in raw.items() if k not in GROUP_FIELD_NAMES}, **(overrides or {})},
                 leaves)
        return
    _leaf(name, _config(factory, entry, overrides), leaves)


def _members(tm: Any, group: str, raw: dict, overrides: dict, leaves: dict[str, dict]) -> None:
    """A group's `task:` list, as TaskFactory._build_group_members reads it."""
    from lm_eval.tasks._factory import GROUP_FIELD_NAMES

    registry = tm.task_index
    for item in raw.get("task") or []:
        if isinstance(item, dict) and "group" in item:
            sub = {k: v for k, v in item.items() if k != "group"}
            if item["group"] in registry:
                _walk(tm, item["group"], {**overrides, **sub}, leaves)
            else:  # an inline group
                _members(tm, f"{group}::{item['group']}", item,
                         {**overrides, **{k: v for k, v in item.items() if k not in GROUP_FIELD_NAMES}}, leaves)
            continue
        base, item_over = (item, overrides) if isinstance(item, str) else (item["task"], {**overrides, **item})
        if base in registry:
            _walk(tm, base, item_over, leaves)
        else:  # an inline task, defined entirely by the group's overrides
            _leaf(f"{group}::{base}", item_over, leaves)


def _leaf(task: str, task_config: dict, leaves: dict[str, dict]) -> None:
    """One leaf task's datasets, from its lm-eval task config (the YAML as TaskManager builds it)."""
    cls = task_config.get("class")
    leaves.setdefault(task, {
        "task": task,
        "dataset_path": task_config.get("dataset_path") or getattr(cls, "DATASET_PATH", None),
        "dataset_name": task_config.get("dataset_name") or getattr(cls, "DATASET_NAME", None),
        "dataset_kwargs": {k: v for k, v in (task_config.get("dataset_kwargs") or {}).items()
                           if k != "trust_remote_code"},
        "custom_dataset": task_config.get("custom_dataset") is not None,
    })


def load_task_dataset(leaf: dict, cache_dir: str | None = None) -> None:
    """Download and prepare one task's dataset as lm-eval's Task.download does (prefetch); `cache_dir`
    is where the job's `datasets` will look (HF_DATASETS_CACHE), named so env changes cannot split them."""
    import datasets

    datasets.load_dataset(path=leaf["dataset_path"], name=leaf["dataset_name"], cache_dir=cache_dir,
                          **leaf["dataset_kwargs"])
