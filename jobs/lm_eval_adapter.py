"""A thin wrapper over lm-evaluation-harness 0.4.13: one benchmark config in, one result dict out.

lm-eval changes its result layout between releases; everything that reads its output lives here.
The model is the caller's already-loaded model (base + active adapter, or a merged model), wrapped
in `HFLM(pretrained=model, tokenizer=tok)`, so swapping adapters never reloads the base.

A benchmark config (docs/contract.md, eval):
  {"type": "lm_eval", "task": "mmlu" | "<local task name>", "include_path": "<task dir>" | null,
   "num_fewshot": 5 | null, "metric": "acc", "filter": "none" | null, "limit": null,
   "chat_template": false, "fewshot_as_multiturn": true, "batch_size": "auto" | 8 | null,
   "bootstrap_iters": 1000}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from jobs.errors import JobFailure


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
    takes seconds, so a task found in the local folder alone is served without it."""
    from lm_eval.tasks import TaskManager

    key = (include_path, task)
    if key not in cache:
        tm = None
        if include_path:
            tm = TaskManager(include_path=include_path, include_defaults=False)
            if task not in tm.task_index:
                tm = None
        cache[key] = tm or TaskManager(include_path=include_path)
    return cache[key]


def run_benchmark(model: Any, tokenizer: Any, name: str, cfg: dict, *, device: str,
                  task_managers: dict | None = None) -> dict:
    """Evaluate one lm-eval benchmark on `model`; return its eval.json entry.

    Entry: {"metric": "acc", "acc": v, "acc_stderr": v|None, "n": count, "metric_key": "acc,none",
            "task": ..., "num_fewshot": ..., "chat_template": bool, "task_versions": {...},
            "limit": ...}
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    task = cfg.get("task")
    metric = cfg.get("metric")
    if not task or not metric:
        raise JobFailure(f"benchmarks.{name}: an lm_eval benchmark needs 'task' and 'metric'")
    include = cfg.get("include_path")
    chat = bool(cfg.get("chat_template", False))
    # lm-eval's "auto" probes the largest batch that fits the GPU; on CPU that probe costs more than it saves.
    batch = cfg.get("batch_size") or ("auto" if device.startswith("cuda") else 8)

    if include and not Path(include).is_dir():
        raise JobFailure(f"benchmarks.{name}.include_path: {include} is not a directory")
    tm = task_manager(include, task, task_managers if task_managers is not None else {})
    if task not in tm.task_index:
        raise JobFailure(f"benchmarks.{name}.task: lm-eval knows no task or group {task!r}"
                         f"{' (built-in tasks or ' + str(include) + ')' if include else ''}")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch, max_batch_size=64, device=device)
    out = lm_eval.simple_evaluate(
        model=lm, tasks=[task], task_manager=tm, num_fewshot=cfg.get("num_fewshot"),
        limit=cfg.get("limit"), apply_chat_template=chat,
        fewshot_as_multiturn=bool(cfg.get("fewshot_as_multiturn", chat)),
        bootstrap_iters=int(cfg.get("bootstrap_iters", 1000)), log_samples=False,
        confirm_run_unsafe_code=False)
    results = out["results"]
    if task not in results:
        raise JobFailure(f"benchmarks.{name}: lm-eval returned no result for task {task!r}")
    key = _metric_key(results[task], task, metric, cfg.get("filter"))
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
        "num_fewshot_per_task": dict(shots), "chat_template": chat, "limit": cfg.get("limit"),
        "task_versions": {k: v for k, v in out.get("versions", {}).items()},
    }
