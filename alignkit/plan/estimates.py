"""plan's cost estimates: GPU-hours per stage, checkpoint and benchmark, CPU-hours for merges and
judges, and the expected wall-clock at the profile's array throttles. Login side, no torch.

Evaluation is estimated from the work each benchmark does at a checkpoint (generated tokens,
loglikelihood requests) divided by the rates in alignkit/plan/eval_rates.json. That table is written by
the GPU check (bench/gpu_evalrate.py, docs/gpu.md "Eval rates"); until a GPU has measured it, it
holds a guess whose derivation it states, and plan says so. A benchmark whose work is unknown (an
lm-eval task not in LM_EVAL_TASKS) falls back to the stage's `estimate` for its job. Training,
merges and judges use the stage's `estimate` (spec or profile; `time` if none).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

RATES_FILE = Path(__file__).with_name("eval_rates.json")

# The lm-eval tasks whose size is known: documents, subtasks (a `limit` applies per subtask),
# requests per document and their kind. MMLU: 14,042 test questions in 57 subjects, 4 choices
# (hendrycks/test; lm-eval tasks/mmlu/default). BBH: 6,511 examples in 27 tasks, generate_until up
# to HFLM's max_gen_toks 256 (lm-eval tasks/bbh/fewshot; an upper bound: generation stops at "\n\n").
LM_EVAL_TASKS: dict[str, dict[str, Any]] = {
    "mmlu": {"kind": "loglikelihood", "docs": 14042, "subtasks": 57, "requests_per_doc": 4},
    "bbh_fewshot": {"kind": "generate_until", "docs": 6511, "subtasks": 27, "max_gen_toks": 256},
}


def load_rates(path: Path | None = None) -> dict[str, Any]:
    return json.loads((path or RATES_FILE).read_text())


def benchmark_work(bench: Any, items: int | None = None) -> dict[str, Any] | None:
    """What one benchmark (its typed config) does at one checkpoint: {"kind", "requests", "tokens"}
    (tokens: generated, an upper bound at max_new_tokens), or None when unknown. `items`: the type's
    default item count."""
    if bench.type == "lm_eval":
        task = LM_EVAL_TASKS.get(bench.task)
        if task is None:
            return None
        docs = task["docs"] if bench.limit is None else min(task["docs"], task["subtasks"] * bench.limit)
        if task["kind"] == "loglikelihood":
            return {"kind": "loglikelihood", "requests": docs * task["requests_per_doc"], "tokens": 0}
        return {"kind": "generate_until", "requests": docs, "tokens": docs * task["max_gen_toks"]}
    n = bench.num_prompts or items
    if not n or not bench.max_new_tokens:
        return None
    return {"kind": "generation", "requests": n, "tokens": n * bench.max_new_tokens}


def work_seconds(name: str, work: dict[str, Any], rates: dict[str, Any]) -> float:
    r = rates["benchmarks"].get(name) or rates["rates"][work["kind"]]  # a measured per-benchmark row first
    if "requests_per_s" in r:
        return work["requests"] / r["requests_per_s"]
    return work["tokens"] / r["tokens_per_s"]


def _items(type_name: str) -> int | None:
    from alignkit.plugins.benchmarks import BENCHMARKS

    shape = getattr(BENCHMARKS.get(type_name), "judge_shape", None)
    return shape.items if shape is not None else None


def estimate(jobs: list[Any], array_keys: dict[str, tuple], rates: dict[str, Any] | None = None) -> dict[str, Any]:
    rates = rates or load_rates()
    per_bench: dict[str, dict[str, Any]] = {}
    items_cache: dict[str, int | None] = {}
    # eval jobs share their benchmark set and checkpoint list (one object each, compile.py): cost each once
    costed: dict[tuple, list[tuple[str, str, int, Any, float | None]]] = {}

    def cost(benchmarks: dict[str, Any], ckpts: list[str]) -> list[tuple[str, str, int, Any, float | None]]:
        out = []
        for name, b in benchmarks.items():
            wanted = None if b.checkpoints is None else {str(x) for x in b.checkpoints}
            n = sum(1 for c in ckpts if wanted is None or c in wanted)
            if b.type not in items_cache:
                items_cache[b.type] = _items(b.type)
            work = benchmark_work(b, items_cache[b.type])
            out.append((name, b.type, n, work, None if work is None else work_seconds(name, work, rates)))
        return out

    fallback = 0
    groups: dict[tuple, int] = {}  # (benchmark set, checkpoints, gpus) -> eval jobs
    job_hours: list[float] = []  # in job order (wall_clock reads them beside the jobs)
    stages: dict[str, dict[str, float]] = {}
    for job in jobs:
        r = job.resources
        hours = r.estimate_min / 60
        if job.stage == "eval":
            benchmarks, at = job.config.benchmarks, job.config.checkpoints
            key = (id(benchmarks), id(at))
            if key not in costed:
                costed[key] = cost(benchmarks, [str(c) for c in at])
            group = (key, r.gpus)
            groups[group] = groups.get(group, 0) + 1
            if all(per_ckpt is not None for *_, per_ckpt in costed[key]):
                hours = sum(per_ckpt * n for _, _, n, _, per_ckpt in costed[key]) / 3600
            else:
                fallback += 1
        job_hours.append(hours)
        st = stages.get(job.stage)
        if st is None:
            st = stages[job.stage] = {"jobs": 0, "gpu_hours": 0.0, "cpu_hours": 0.0}
        st["jobs"] += 1
        st["gpu_hours"] += hours * r.gpus * r.nodes
        st["cpu_hours"] += hours * r.cpus * r.nodes
    for (key, gpus), count in groups.items():
        for name, type_name, n, work, per_ckpt in costed[key]:
            row = per_bench.setdefault(name, {"type": type_name, "checkpoint_evals": 0, "gpu_hours": 0.0,
                                              "work_per_checkpoint": work})
            row["checkpoint_evals"] += n * count
            if per_ckpt is not None:
                row["gpu_hours"] += per_ckpt * n * count / 3600 * gpus
                row["gpu_s_per_checkpoint"] = round(per_ckpt, 1)
    return {
        "eval_rates": {"measured": bool(rates.get("measured")), "device": rates.get("device"),
                       "basis": rates.get("basis"), "file": "alignkit/plan/eval_rates.json"},
        "stages": {k: {"jobs": v["jobs"], "gpu_hours": round(v["gpu_hours"], 1), "cpu_hours": round(v["cpu_hours"], 1)}
                   for k, v in stages.items()},
        "eval_benchmarks": {k: {**v, "gpu_hours": round(v["gpu_hours"], 1)} for k, v in per_bench.items()},
        "eval_jobs_on_stage_estimate": fallback,
        "wall_clock": wall_clock(jobs, array_keys, job_hours),
    }


def wall_clock(jobs: list[Any], array_keys: dict[str, tuple], job_hours: list[float]) -> dict[str, Any]:
    """Each array runs its jobs `array_parallelism` at a time (waves of its mean job time) and starts
    when every array it waits on has finished: the longest such path. An upper bound on aftercorr
    chains (eval i starts when train i ends) and a lower bound where the cluster has fewer free GPUs
    than the throttles allow or jobs wait in the queue. `job_hours`: each job's, in job order."""
    arrays: dict[tuple, dict[str, Any]] = {}
    for job, hours in zip(jobs, job_hours, strict=True):
        k = array_keys[job.id]
        a = arrays.get(k)
        if a is None:  # made once per array, not once per job
            a = arrays[k] = {"stage": job.stage, "hours": 0.0, "jobs": 0, "after": set(),
                             "throttle": job.resources.array_parallelism}
        a["hours"] += hours  # summed in job order, as sum() of the array's list would
        a["jobs"] += 1
        for d in job.depends_on:
            if d in array_keys:  # every planned job has a key
                a["after"].add(array_keys[d])
    done: dict[tuple, float] = {}

    def finish(k: tuple) -> float:
        if k not in done:
            a = arrays[k]
            waves = math.ceil(a["jobs"] / max(1, a["throttle"]))
            own = waves * a["hours"] / a["jobs"]
            done[k] = own + max((finish(u) for u in a["after"] if u != k), default=0.0)
        return done[k]

    per_stage: dict[str, float] = {}
    for k, a in arrays.items():
        per_stage[a["stage"]] = max(per_stage.get(a["stage"], 0.0), finish(k))
    return {"hours": round(max(done.values(), default=0.0), 1),
            "stage_done_at_hours": {k: round(v, 1) for k, v in per_stage.items()}}
