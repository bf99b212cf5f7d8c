"""The tidy long table: one row per job × checkpoint × benchmark × metric.

Every axis is a column, so any slice is a filter and any summary a group-by: the named axes always,
then each dotted axis the manifest's "axes" lists (e.g. `method.beta`). Eval and judge
results give the benchmark rows; a train job's own numeric metrics (loss, tokens/s) give rows
with benchmark "train". An eval that has not produced a result yet still gives rows, with an
empty value and its state, so a partial study shows its holes instead of hiding them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable

from alignkit.collect.study import JobRecord, Problem, Study
from alignkit.contract.fsio import atomic_write_bytes, atomic_write_text
from alignkit.contract.textsafe import csv_cell
from alignkit.contract import paths

AXIS_COLUMNS = ("model", "paper_model", "dataset", "preference", "method", "peft", "seed", "merge", "merge_method")
_HEAD = ("job_id", "stage", "target_job", "target_kind")
_TAIL = (
    "checkpoint", "step", "benchmark", "metric",
    "value", "stderr", "n", "state", "slurm_id", "target_state", "target_slurm_id", "wall_s", "gpu_hours",
    "wall_source", "eval_wall_s", "eval_gpu_hours", "tokens_per_s", "peak_mem_gb", "versions",
    "dataset_revision", "code_commit", "name",
)
COLUMNS = (*_HEAD, *AXIS_COLUMNS, *_TAIL)   # a study that sweeps no dotted axis; else columns(extra)


def extra_axes(study: Study) -> list[str]:
    """The swept axes beyond the named ones (manifest "axes", e.g. `method.beta`): one column each,
    after the named axes, and `target` when the study evaluates `targets:`. A name that collides with
    another column cannot be one (a Problem)."""
    out = []
    for a in study.axes:
        if a in AXIS_COLUMNS:
            continue
        if a in COLUMNS:
            study.problems.append(Problem(study.manifest_path, f"axes: {a!r} is a tidy-table column name; "
                                                               "not shown as an axis"))
            continue
        out.append(a)
    if "target" not in out and any(j.axes.get("target") is not None for j in study.jobs.values()):
        out.append("target")   # a `targets:` entry's name: what tells an evaluation-only study's rows apart
    return out


def columns(extra: Iterable[str] = ()) -> tuple[str, ...]:
    return (*_HEAD, *AXIS_COLUMNS, *extra, *_TAIL)


def axis_value(value: Any) -> Any:
    """A swept value as a cell: numbers and strings as they are; a list or object as its JSON text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)
FLOAT_COLUMNS = frozenset({"value", "stderr", "wall_s", "gpu_hours", "eval_wall_s", "eval_gpu_hours",
                           "tokens_per_s", "peak_mem_gb"})
INT_COLUMNS = frozenset({"seed", "step", "n"})
# Known names of the same quantity in result files written by different versions of the jobs.
_WALL_KEYS = ("wall_s", "train_runtime", "runtime_s", "total_s", "elapsed_s")
_TOKS_KEYS = ("tokens_per_s", "tokens_per_second", "train_tokens_per_second")
_MEM_KEYS = ("peak_mem_gb", "peak_memory_gb", "peak_gpu_memory_gb", "max_memory_allocated_gb")
# train_metrics.json numbers that become rows (benchmark "train"); counts and settings do not.
TRAIN_METRICS = ("final_loss", "first_loss", "train_loss", "tokens_per_s", "samples_per_s", "train_wall_s",
                 "tokens_seen")
_NOT_METRICS = frozenset(_WALL_KEYS) | {"n", "global_step", "step", "max_steps", "epoch", "min_prompt_toxicity"}


def pref_label(value: Any) -> str | None:
    """Preference axis as one string: a mixture list becomes "harmless+helpful"."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return "+".join(sorted(str(v) for v in value))
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: Any) -> float | None:
    """A finite number, else None: JSON's NaN/Infinity never reach a table, mean or "best" pick."""
    if not _is_number(value) or not math.isfinite(value):
        return None
    return float(value)


def _not_finite(problems: list[Problem], path: Path, key: str, value: Any) -> None:
    problems.append(Problem(str(path), f"key '{key}' is {value!r}, not a finite number; left empty"))


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _find(obj: Any, keys: Iterable[str]) -> Any:
    """First of `keys` at the top of a result or in its usual sub-objects."""
    if not isinstance(obj, dict):
        return None
    for where in (obj, obj.get("metrics"), obj.get("provenance"), obj.get("timings"), obj.get("performance")):
        if isinstance(where, dict):
            for k in keys:
                if where.get(k) is not None:
                    return where[k]
    return None


def _versions(*results: Any) -> str | None:
    """Package versions as "name=version ...": from a dict ("versions"/"packages") or from
    "<name>_version" keys (the eval job's provenance); the first result that has any wins."""
    for res in results:
        v = _find(res, ("versions", "packages"))
        if not (isinstance(v, dict) and v) and isinstance(res, dict):
            prov = res.get("provenance") if isinstance(res.get("provenance"), dict) else res
            v = {k[: -len("_version")]: x for k, x in prov.items() if k.endswith("_version") and isinstance(x, str)}
        if isinstance(v, dict) and v:
            return " ".join(f"{k}={v[k]}" for k in sorted(v) if v[k] is not None)
    return None


def _peak_gb(tm: Any) -> float | None:
    gb = _num(_find(tm, _MEM_KEYS))
    if gb is None and _num(_find(tm, ("peak_memory_bytes",))) is not None:
        gb = _num(_find(tm, ("peak_memory_bytes",))) / 2**30
    return gb


def _final_step(target: JobRecord | None) -> int | None:
    if target is None:
        return None
    step = _int(((target.config.get("training") or {}).get("max_steps")))
    # num_train_epochs: the config has no max_steps; the job recorded the steps it counted
    return step if step is not None else _int(_find(target.results.get(paths.TRAIN_METRICS),
                                                    ("global_step", "max_steps")))


def _extra_columns(job: JobRecord, target: JobRecord | None, extra: list[str]) -> dict[str, Any]:
    """Dotted axes from the job's `axes`; a merge that does not carry one takes its inputs' value
    (their `input_axes`), or "{a,b}" when the inputs differ (a merge across that axis)."""
    axes = job.axes or (target.axes if target else {})
    merge = target if target is not None and target.stage == "merge" else None
    out = {}
    for a in extra:
        v = axes.get(a)
        if v is None and merge is not None and a not in axes:
            vals = list(dict.fromkeys(axis_value(ia.get(a)) for ia in merge.config.get("input_axes") or []
                                      if isinstance(ia, dict) and ia.get(a) is not None))
            v = vals[0] if len(vals) == 1 else ("{" + ",".join(map(str, vals)) + "}" if vals else None)
        out[a] = axis_value(v)
    return out


def _axes_columns(job: JobRecord, target: JobRecord | None) -> dict[str, Any]:
    axes = job.axes or (target.axes if target else {})
    model = job.config.get("model") or (target.config.get("model") if target else None) or {}
    merge_cfg = (target.config.get("merge") if target and target.stage == "merge" else job.config.get("merge")) or {}
    seed = axes.get("seed")
    return {"model": axes.get("model") or model.get("name"), "paper_model": model.get("paper_name"),
            "dataset": axes.get("dataset"), "preference": pref_label(axes.get("preference")),
            "method": axes.get("method"), "peft": axes.get("peft"),
            "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            "merge": axes.get("merge"), "merge_method": merge_cfg.get("method") if axes.get("merge") else None}


def _provenance(job: JobRecord, target: JobRecord | None) -> dict[str, Any]:
    tm = target.results.get(paths.TRAIN_METRICS) if target else None
    mj = target.results.get(paths.MERGE) if target else None
    wall, source = None, None
    if target is not None and target.elapsed_s is not None:
        wall, source = target.elapsed_s, target.elapsed_from
    elif _num(_find(tm or mj, _WALL_KEYS)) is not None:
        wall, source = _num(_find(tm or mj, _WALL_KEYS)), "result file"
    gpus = ((target.resources.get("gpus") or 0) * (target.resources.get("nodes") or 1)) if target else 0
    ds_rev = _find(tm, ("dataset_revision",))
    if ds_rev is None and target is not None:
        ds_rev = (target.config.get("dataset") or {}).get("revision")
    own = job.results.get(paths.EVAL) or job.results.get(paths.JUDGE)
    return {
        "state": job.state, "slurm_id": job.slurm_id,
        "target_state": target.state if target else None, "target_slurm_id": target.slurm_id if target else None,
        "wall_s": wall, "gpu_hours": wall * gpus / 3600.0 if wall is not None else None, "wall_source": source,
        "eval_wall_s": job.elapsed_s if job.elapsed_s is not None else _num(_find(own, _WALL_KEYS)),
        "eval_gpu_hours": job.gpu_hours,
        "tokens_per_s": _num(_find(tm, _TOKS_KEYS)), "peak_mem_gb": _peak_gb(tm),
        "versions": _versions(own, tm, mj), "dataset_revision": ds_rev,
        "code_commit": _find(own, ("code_commit",)) or _find(tm or mj, ("code_commit",)),
    }


def _target_of(study: Study, job: JobRecord) -> tuple[JobRecord | None, str | None]:
    """The trained or merged model an eval/judge job measured, and its kind."""
    target = (job.config.get("target") or {})
    tid = target.get("job")
    if job.stage == "judge":
        ev = study.jobs.get(tid)
        if ev is None:
            return None, None
        target = ev.config.get("target") or {}
        tid = target.get("job")
    return study.jobs.get(tid), target.get("kind")


def _metric_rows(values: dict[str, Any]) -> list[tuple[str, Any, float | None]]:
    """The metrics of one benchmark entry. Entries also carry settings (num_fewshot, limit,
    max_new_tokens, min_prompt_toxicity, ...), so a metric is: the key the entry names in
    "metric", or a key with a "<key>_stderr" sibling; only when neither exists, every float.
    Values are as read (NaN and ±inf included: the caller reports them)."""
    named = values.get("metric") if isinstance(values.get("metric"), str) else None
    keys = [k for k in values if k == named or f"{k}_stderr" in values]
    if not keys:
        keys = [k for k, v in values.items() if isinstance(v, float) and not k.endswith("_stderr")
                and k not in _NOT_METRICS]
    return [(k, values.get(k), _num(values.get(f"{k}_stderr"))) for k in keys
            if _is_number(values.get(k)) or k == named]


def build_rows(study: Study, extra: list[str] | None = None) -> list[dict[str, Any]]:
    """The tidy rows; a NaN/±inf metric becomes an empty value and a Problem in study.problems.
    `extra`: the dotted axes to give columns (default: extra_axes(study))."""
    extra = extra_axes(study) if extra is None else extra
    rows: list[dict[str, Any]] = []
    for job in study.jobs.values():
        if job.stage in ("eval", "judge"):
            rows.extend(_eval_rows(study, job, extra))
        elif job.stage == "train" and paths.TRAIN_METRICS in job.results:
            rows.extend(_train_rows(job, study.problems, extra))
    return rows


def _base_row(job: JobRecord, target: JobRecord | None, kind: str | None, extra: list[str]) -> dict[str, Any]:
    return {"job_id": job.id, "stage": job.stage, "target_job": target.id if target else None,
            "target_kind": kind, **_axes_columns(job, target), **_extra_columns(job, target, extra),
            **_provenance(job, target), "name": job.name}


def _eval_rows(study: Study, job: JobRecord, extra: list[str]) -> list[dict[str, Any]]:
    target, kind = _target_of(study, job)
    base = _base_row(job, target, kind, extra)
    final = _final_step(target) if target is not None and target.stage == "train" else None
    fname = paths.EVAL if job.stage == "eval" else paths.JUDGE
    result = job.results.get(fname)
    got = result["checkpoints"] if result else {}
    benches = job.config.get("benchmarks") or {}
    expected = [str(c) for c in job.config.get("checkpoints") or ["final"]]
    rows = []
    # num_train_epochs: a fraction of training shows under the step the train job made of it
    fraction_steps = target.fraction_steps if target is not None and target.stage == "train" else {}
    for ck in list(dict.fromkeys(expected + list(got))):
        step = final if ck == "final" else fraction_steps.get(ck, _int(ck))
        results = got.get(ck) or {}
        for bench in list(dict.fromkeys(list(benches) + list(results))):
            values = results.get(bench)
            at = benches[bench].get("checkpoints") if isinstance(benches.get(bench), dict) else None
            if values is None and at is not None and ck not in {str(c) for c in at}:
                continue  # the benchmark runs at its own checkpoints only (docs/contract.md): no hole
            metrics = _metric_rows(values) if isinstance(values, dict) else []
            n = _int(values.get("n")) if isinstance(values, dict) else None
            if not metrics and isinstance(values, dict):
                continue  # produced, but its numbers come from the judge stage (judge.json rows)
            if not metrics:  # not produced (yet): one empty row keeps the hole visible
                metric = (benches.get(bench) or {}).get("metric") if isinstance(benches.get(bench), dict) else None
                metrics = [(metric or "", None, None)]
            for metric, value, stderr in metrics:
                if _is_number(value) and _num(value) is None:
                    _not_finite(study.problems, job.dir / fname, f"checkpoints.{ck}.{bench}.{metric}", value)
                shown = str(step) if ck in fraction_steps else ck
                rows.append({**base, "checkpoint": shown, "step": step, "benchmark": bench, "metric": metric,
                             "value": _num(value), "stderr": stderr, "n": n})
    return rows


def validation_point(tm: Any, checkpoint: str = "final") -> dict[str, Any] | None:
    """train_metrics.json "validation" (docs/training.md): its "final" point, or the curve's point
    logged at step `checkpoint`; None when there is none."""
    val = tm.get("validation") if isinstance(tm, dict) else None
    if not isinstance(val, dict):
        return None
    if checkpoint == "final":
        return val.get("final") if isinstance(val.get("final"), dict) else None
    for p in val.get("curve") or []:
        if isinstance(p, dict) and str(p.get("step")) == str(checkpoint):
            return p
    return None


def _train_rows(job: JobRecord, problems: list[Problem], extra: list[str]) -> list[dict[str, Any]]:
    tm = job.results[paths.TRAIN_METRICS]
    base = _base_row(job, job, "adapter", extra)
    values = {k: (k, tm[k]) for k in TRAIN_METRICS if _is_number(tm.get(k))}
    for sub in ("metrics", "dpo"):  # nested blocks: every number in them
        if isinstance(tm.get(sub), dict):
            values.update({(k if sub == "metrics" else f"{sub}_{k}"): (f"{sub}.{k}", v) for k, v in tm[sub].items()
                           if _is_number(v)})
    final = validation_point(tm)   # the held-out split's last evaluation: validation_loss, ...
    values.update({f"validation_{k}": (f"validation.final.{k}", v) for k, v in (final or {}).items()
                   if k not in ("step", "epoch") and _is_number(v)})
    for key, v in values.values():
        if _num(v) is None:  # a diverged run's NaN loss: reported, not averaged
            _not_finite(problems, job.dir / paths.TRAIN_METRICS, key, v)
    return [{**base, "checkpoint": "final", "step": _final_step(job), "benchmark": "train", "metric": m,
             "value": _num(v), "stderr": None, "n": None} for m, (_key, v) in values.items()]


# ---------------------------------------------------------------- writing
def to_csv(rows: list[dict[str, Any]], cols: tuple[str, ...] = COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")  # csv writes None as an empty field
    w.writerow([csv_cell(c) for c in cols])  # formula starts and bidi controls made inert (alignkit/contract/textsafe.py)
    w.writerows([csv_cell(r.get(c)) for c in cols] for r in rows)
    return buf.getvalue()


def write_csv(rows: list[dict[str, Any]], path: Path, cols: tuple[str, ...] = COLUMNS) -> Path:
    atomic_write_text(path, to_csv(rows, cols))
    return path


def _kind(rows: list[dict[str, Any]], c: str) -> str:
    """A dotted axis column's type from its values: int, float (ints and floats mixed) or string."""
    vals = [r.get(c) for r in rows if r.get(c) is not None]
    if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return "int"
    if vals and all(_is_number(v) for v in vals):
        return "float"
    return "string"


def write_parquet(rows: list[dict[str, Any]], path: Path, cols: tuple[str, ...] = COLUMNS) -> Path:
    """Parquet with an explicit schema, so an all-empty column still has its type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    extra = [c for c in cols if c not in COLUMNS]
    kinds = {c: "float" if c in FLOAT_COLUMNS else "int" if c in INT_COLUMNS else "string" for c in COLUMNS}
    kinds.update({c: _kind(rows, c) for c in extra})
    arrow = {"float": pa.float64(), "int": pa.int64(), "string": pa.string()}
    out = {}
    for c in cols:
        vals = [r.get(c) for r in rows]
        if kinds[c] == "string":
            vals = [None if v is None else str(v) for v in vals]
        elif kinds[c] == "float":
            vals = [None if v is None else float(v) for v in vals]
        out[c] = pa.array(vals, type=arrow[kinds[c]])
    buf = io.BytesIO()
    pq.write_table(pa.table(out), buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def to_jsonable(rows: list[dict[str, Any]], cols: tuple[str, ...] = COLUMNS) -> str:
    return json.dumps([{c: r.get(c) for c in cols} for r in rows])
