"""The checkpoint index: every adapter and merged model of a study, with path, size and step,
and the best checkpoint of each run by a metric the user names (`--metric mmlu/acc`)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.collect.study import Study
from alignkit.contract.errors import UserError
from alignkit.contract import paths

_STEP_DIR = re.compile(r"^step-(\d+)$")
INDEX_COLUMNS = ("job_id", "name", "kind", "checkpoint", "step", "model", "dataset", "preference", "method",
                 "peft", "seed", "merge", "state", "bytes", "path", "metric", "value")


def dir_bytes(path: Path) -> int:
    total = 0
    stack = [str(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


@dataclass(frozen=True)
class MetricChoice:
    benchmark: str
    metric: str | None      # None: the benchmark's primary metric
    higher_is_better: bool

    @classmethod
    def parse(cls, text: str) -> "MetricChoice":
        """`mmlu`, `mmlu/acc`, `red_instruct/asr:min` or `-red_instruct/asr` (lower is better)."""
        t = text.strip()
        higher = True
        if t.startswith("-"):
            t, higher = t[1:], False
        if t.endswith((":min", ":max")):
            t, higher = t[:-4], t.endswith(":max")
        bench, _, metric = t.partition("/")
        if not bench or not re.fullmatch(r"[\w.\-]+", bench) or (metric and not re.fullmatch(r"[\w.\-]+", metric)):
            raise UserError(f"--metric {text!r}: expected BENCHMARK or BENCHMARK/METRIC, optionally ending in :min")
        return cls(bench, metric or None, higher)


def index_columns(extra: list[str] | tuple[str, ...] = ()) -> tuple[str, ...]:
    """INDEX_COLUMNS with the study's dotted axes after the named ones."""
    n = INDEX_COLUMNS.index("state")
    return (*INDEX_COLUMNS[:n], *extra, *INDEX_COLUMNS[n:])


def build_index(study: Study, extra: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    from alignkit.collect.tidy import axis_value

    out = []
    for job in study.jobs.values():
        axes = job.axes
        common = {"job_id": job.id, "name": job.name, "model": axes.get("model"), "dataset": axes.get("dataset"),
                  "preference": axes.get("preference") if not isinstance(axes.get("preference"), list)
                  else "+".join(sorted(axes["preference"])), "method": axes.get("method"),
                  "peft": axes.get("peft"), "seed": axes.get("seed"), "merge": axes.get("merge"),
                  **{a: axis_value(axes.get(a)) for a in extra}, "state": job.state}
        if job.stage == "train":
            ck = job.dir / paths.CHECKPOINTS
            try:
                steps = sorted((int(m.group(1)), e.path) for e in os.scandir(ck)
                               if e.is_dir() and (m := _STEP_DIR.match(e.name)))
            except OSError:
                steps = []
            for step, path in steps:
                out.append({**common, "kind": "checkpoint", "checkpoint": str(step), "step": step,
                            "bytes": dir_bytes(Path(path)), "path": path})
            if (job.dir / paths.ADAPTER).is_dir():
                final = (job.config.get("training") or {}).get("max_steps")
                if final is None:  # num_train_epochs: the steps the job counted
                    final = (job.results.get(paths.TRAIN_METRICS) or {}).get("max_steps")
                out.append({**common, "kind": "adapter", "checkpoint": "final", "step": final,
                            "bytes": dir_bytes(job.dir / paths.ADAPTER), "path": str(job.dir / paths.ADAPTER)})
        elif job.stage == "merge" and (job.dir / "model").is_dir():
            out.append({**common, "kind": "merged", "checkpoint": "final", "step": None,
                        "bytes": dir_bytes(job.dir / "model"), "path": str(job.dir / "model")})
    return out


def attach_metric(index: list[dict[str, Any]], rows: list[dict[str, Any]], choice: MetricChoice,
                  primary: dict[str, str]) -> str:
    """Fill each entry's `value` with the chosen metric; returns the metric's full name."""
    metric = choice.metric or primary.get(choice.benchmark)
    if metric is None:
        known = sorted({r["benchmark"] for r in rows if r["stage"] != "train"})
        raise UserError(f"--metric: no results for benchmark {choice.benchmark!r} "
                        f"(benchmarks with results: {', '.join(known) or 'none'})")
    sums: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["benchmark"] == choice.benchmark and r["metric"] == metric and r["value"] is not None:
            sums.setdefault((r["target_job"], r["checkpoint"]), []).append(r["value"])
    if not sums:
        raise UserError(f"--metric: no values of {choice.benchmark}/{metric} in this study yet")
    name = f"{choice.benchmark}/{metric}"
    for e in index:
        vals = sums.get((e["job_id"], e["checkpoint"]))
        e["metric"], e["value"] = name, (sum(vals) / len(vals) if vals else None)
    return name


def best_per_run(index: list[dict[str, Any]], choice: MetricChoice) -> list[dict[str, Any]]:
    """For each train or merge job, its entry with the best metric value (entries without one are skipped)."""
    best: dict[str, dict[str, Any]] = {}
    for e in index:
        v = e.get("value")
        if not isinstance(v, (int, float)) or not math.isfinite(v):  # NaN compares false both ways
            continue
        cur = best.get(e["job_id"])
        better = cur is None or (e["value"] > cur["value"] if choice.higher_is_better else e["value"] < cur["value"])
        if better:
            best[e["job_id"]] = e
    return sorted(best.values(), key=lambda e: e["name"])
