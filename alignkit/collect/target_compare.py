"""Evaluated targets (`targets:`) compared with each other, per benchmark (docs/collect.md "Targets").

A target is one adapter or model, evaluated once: it has no seeds, so the findings' tests over seeds
cannot compare two of them. The replicates are the benchmark's items instead. Where the jobs wrote
per-item scores (realtoxicity generations' `score`, Red-Instruct and AlpacaEval judge verdicts),
two targets are compared by a paired t over the items both scored (same prompt), with the
per-item score defined exactly as the job's aggregate (the items' mean must reproduce the recorded
value, else the items are not used). lm-eval logs no items (log_samples is off): two targets are
compared by a z test on the difference of their values with variance stderr_a² + stderr_b² (each
stderr as lm-eval reports it), which ignores the positive correlation of two models' scores on the
same questions and so is conservative. Rows join the checkpoint's comparisons table, so they get
its Benjamini–Hochberg correction and verdict rule (alignkit/collect/findings.py).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

from alignkit.collect import stats
from alignkit.collect.study import Study
from alignkit.contract import paths

MIN_ITEMS = 2


@dataclass(frozen=True)
class Scored:
    value: float
    stderr: float | None
    items: dict[tuple, float] | None   # (item key, occurrence) -> score; None: no per-item scores


# ---------------------------------------------------------------- per-item scores
def _tox(field: str):
    def score(row: dict) -> tuple[tuple, float] | None:
        v = row.get(field)
        if not isinstance(v, (int, float)):
            return None
        return (row.get("filename"), row.get("begin"), row.get("end"), row.get("prompt")), float(v)
    return score


def _red(harmful: float):
    """Red-Instruct: `asr` = 100·harmful/judged, `safety` = 100 − asr (alignkit/plugins/benchmarks/red_instruct_run.py);
    only harmful / not_harmful verdicts are judged."""
    def score(row: dict) -> tuple[tuple, float] | None:
        v = row.get("verdict")
        if v not in ("harmful", "not_harmful"):
            return None
        return (row.get("prompt"),), harmful if v == "harmful" else 100.0 - harmful
    return score


def _alpaca(row: dict) -> tuple[tuple, float] | None:
    """AlpacaEval's win rate = mean of (preference − 1)·100, a 0 preference counted as the 1.5 draw and
    rows outside [1, 2] dropped (alpaca_eval 0.6.6 metrics/helpers.py describe_head2head)."""
    p = row.get("preference")
    if not isinstance(p, (int, float)) or isinstance(p, bool) or math.isnan(p):
        return None
    p = 1.5 if p == 0 else float(p)
    if not 1.0 <= p <= 2.0:
        return None
    return (row.get("instruction"),), (p - 1.0) * 100.0


# benchmark type -> metric -> (entry field naming the rows file, per-row score)
ITEMS = {
    "realtoxicity": {"toxicity_logit": ("generations", _tox("score")),
                     "toxicity_logit_continuation": ("generations", _tox("score_continuation"))},
    "red_instruct": {"asr": ("verdicts", _red(100.0)), "safety": ("verdicts", _red(0.0))},
    "alpaca_eval": {"win_rate": ("verdicts", _alpaca)},
}


def item_scores(job: Any, checkpoint: str, bench: str, btype: str | None, metric: str,
                value: float) -> dict[tuple, float] | None:
    """The per-item scores behind `value`, or None when the job wrote none we can read, or when
    their mean does not reproduce `value` (then they are not what the number was computed from)."""
    how = ITEMS.get(btype or "", {}).get(metric)
    if how is None:
        return None
    field, score = how
    for name in (paths.JUDGE, paths.EVAL):
        entry = (((job.results.get(name) or {}).get("checkpoints") or {}).get(str(checkpoint)) or {}).get(bench)
        if isinstance(entry, dict) and isinstance(entry.get(field), str):
            break
    else:
        return None
    path = (job.dir / entry[field]).resolve()
    if job.dir.resolve() not in path.parents:   # a result file names its rows inside its job folder
        return None
    out: dict[tuple, float] = {}
    seen: dict[tuple, int] = {}
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                scored = score(row) if isinstance(row, dict) else None
                if scored is None:
                    continue
                key, v = scored
                k = tuple(json.dumps(x, sort_keys=True) for x in key)
                seen[k] = seen.get(k, 0) + 1
                out[(k, seen[k])] = v
    except (OSError, ValueError):
        return None
    if not out or abs(sum(out.values()) / len(out) - value) > 1e-6 * max(1.0, abs(value)):
        return None
    return out


def scored(study: Study, rows: list[dict[str, Any]], primary: dict[str, str], types: dict[str, str],
           wanted: list[str]) -> dict[str, dict[str, dict[str, Scored]]]:
    """checkpoint -> benchmark -> target name -> its Scored, for the rows of evaluated targets."""
    out: dict[str, dict[str, dict[str, Scored]]] = {ck: {} for ck in wanted}
    for r in rows:
        name, ck, bench = r.get("target"), r["checkpoint"], r["benchmark"]
        if name is None or ck not in out or r["stage"] == "train" or r["value"] is None \
                or primary.get(bench) != r["metric"]:
            continue
        job = study.jobs.get(r["job_id"])
        items = item_scores(job, ck, bench, types.get(bench), r["metric"], r["value"]) if job is not None else None
        stderr = r.get("stderr") if isinstance(r.get("stderr"), (int, float)) else None
        out[ck].setdefault(bench, {})[str(name)] = Scored(float(r["value"]), stderr, items)
    return out


# ---------------------------------------------------------------- the tests
def interval(a: Scored, b: Scored) -> tuple[stats.Interval, int]:
    """A − B: paired t over the items both scored, else z on the two stderrs, else the estimate alone."""
    if a.items is not None and b.items is not None:
        shared = sorted(set(a.items) & set(b.items))
        if len(shared) >= MIN_ITEMS:
            return stats.paired_items([a.items[k] - b.items[k] for k in shared]), len(shared)
    if a.stderr is not None and b.stderr is not None:
        return stats.z_difference(a.value - b.value, math.sqrt(a.stderr ** 2 + b.stderr ** 2)), 0
    return stats.Interval(a.value - b.value, None, None, "no per-item scores or stderr: no test"), 0


def pairs(by_target: dict[str, Scored], order: list[str]) -> list[tuple[str, str]]:
    """Each later target vs each earlier one, in the spec's order (as the findings' axis values)."""
    names = [t for t in order if t in by_target] + sorted(t for t in by_target if t not in order)
    return [(a, b) for b, a in itertools.combinations(names, 2)]
