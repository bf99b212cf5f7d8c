"""Selection: the manifest's `select:` → the chosen configuration per group (selection.csv, a report section).

`select` (docs/spec.md; manifest.json, written by the compiler): {"metric", "goal": "min"|"max",
"over": [axis, ...], "by": [axis, ...], "checkpoint": "final"|int}. Within each `by` group, each
distinct combination of the `over` axes is a candidate; its score is the mean of the metric over
every run it covers (seeds, and any axis in neither list). The candidate with the best score is
chosen; the runner-up is the next best. Rules, stated in each row's note and in docs/collect.md:
  - candidates are compared on the runs they all have (matched on seed and every axis in neither
    list): a run one candidate lacks is left out of every candidate's mean, so a failed seed
    cannot favour the candidate that lost it;
  - a run without a value (pending, failed, NaN) is left out of the mean and counted (n_missing);
    a candidate with no value at all cannot be chosen;
  - runs for which every `over` axis is empty (e.g. SFT runs in a `method.beta` search that is
    not grouped by method) are not candidates; they are counted in the group's note;
  - a tie (equal scores) goes to the candidate first in the spec's order, and the note says so.
The metric is either a training-side one, read from each train job's train_metrics.json:
`validation_loss` / `validation_<name>` ("validation": "final", or the curve point logged at the
step `checkpoint` names) or `train/<name>` (the tidy table's train rows); or a benchmark's:
`<benchmark>` (its headline metric) or `<benchmark>/<metric>` at `checkpoint`. Untrained base
models are not candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from alignkit.collect.study import Study
from alignkit.collect.summary import Table, fmt
from alignkit.collect.tidy import _num, axis_value, validation_point
from alignkit.contract.errors import UserError
from alignkit.contract import paths

GOALS = ("min", "max")
_TIE = 1e-12   # relative: scores this close are a tie (float sums in another order differ in the last bits)
TRAILER = ("metric", "goal", "checkpoint", "value", "n", "n_missing", "runner_up", "runner_up_value",
           "candidates", "note")


@dataclass(frozen=True)
class Select:
    metric: str
    goal: str
    over: tuple[str, ...]
    by: tuple[str, ...]
    checkpoint: str     # "final" or a step, as the tidy table's checkpoint column spells it

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.by, *self.over, *TRAILER)


def parse(raw: dict[str, Any] | None, axes: list[str], path: str) -> Select | None:
    """The manifest's `select`, checked against the study's axes: UserError naming the key otherwise."""
    if raw is None:
        return None
    unknown = sorted(set(raw) - {"metric", "goal", "over", "by", "checkpoint"})
    if unknown:
        raise UserError(f"{path}: key 'select.{unknown[0]}': unknown (select has metric, goal, over, by, checkpoint)")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        raise UserError(f"{path}: key 'select.metric': expected a metric name, got {metric!r}")
    if raw.get("goal") not in GOALS:
        raise UserError(f"{path}: key 'select.goal': expected min or max, got {raw.get('goal')!r}")
    lists = {}
    for key in ("over", "by"):
        v = raw.get(key) if raw.get(key) is not None else []
        if not isinstance(v, list) or not all(isinstance(a, str) for a in v):
            raise UserError(f"{path}: key 'select.{key}': expected a list of axis names, got {v!r}")
        bad = [a for a in v if a not in axes and a != "merge"]
        if bad:
            raise UserError(f"{path}: key 'select.{key}': {bad[0]!r} is not an axis of this study "
                            f"(axes: {', '.join(axes)})")
        lists[key] = tuple(v)
    if not lists["over"]:
        raise UserError(f"{path}: key 'select.over': names no axis to choose over")
    both = set(lists["over"]) & set(lists["by"])
    if both:
        raise UserError(f"{path}: key 'select.by': {sorted(both)[0]!r} is also in select.over")
    ck = raw.get("checkpoint", "final")
    if not (ck == "final" or (isinstance(ck, int) and not isinstance(ck, bool) and ck >= 0)):
        raise UserError(f"{path}: key 'select.checkpoint': expected \"final\" or a step number, got {ck!r}")
    return Select(metric.strip(), raw["goal"], lists["over"], lists["by"], str(ck))


# ---------------------------------------------------------------- the units scored
Unit = tuple[dict[str, Any], float | None, tuple]   # a run's axis values, its value (None: missing), its
                                                   # other axes (seed, ...): what candidates are matched on


def _rest(job_axes: dict[str, Any], names: tuple[str, ...]) -> tuple:
    """The run's values of the axes in neither list (seed included): its place in the matched comparison."""
    return tuple(sorted((k, str(_run_axes(job_axes, (k,))[k])) for k in job_axes if k not in names))


def _run_axes(job_axes: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for a in names:
        v = job_axes.get(a)
        out[a] = "+".join(sorted(map(str, v))) if a == "preference" and isinstance(v, (list, tuple)) else axis_value(v)
    return out


# A run's values of the named axes as the selection's rows hold them: alignkit/plan/selected.py matches
# the runs a selection picks by this same rule.
run_values = _run_axes


def units(study: Study, rows: list[dict[str, Any]], sel: Select, primary: dict[str, str]) -> tuple[list[Unit], str]:
    """The scored runs and the metric's full name. UserError when the metric names nothing the study measures."""
    names = (*sel.by, *sel.over)
    if sel.metric.startswith("validation_"):
        key = sel.metric[len("validation_"):]
        out = []
        for job in study.of_stage("train"):
            point = validation_point(job.results.get(paths.TRAIN_METRICS), sel.checkpoint)
            out.append((_run_axes(job.axes, names), _num((point or {}).get(key)), _rest(job.axes, names)))
        return out, f"{sel.metric} (held-out split, checkpoint {sel.checkpoint})"
    bench, _, metric = sel.metric.partition("/")
    if bench == "train":
        known = {r["metric"] for r in rows if r["stage"] == "train"}
        if metric not in known and not study.of_stage("train"):
            raise UserError(f"{study.manifest_path}: key 'select.metric': {sel.metric!r}: the study trains nothing")
        pick = [r for r in rows if r["stage"] == "train" and r["metric"] == metric]
        by_job = {r["job_id"]: r for r in pick}
        return [(_run_axes(job.axes, names), _num((by_job.get(job.id) or {}).get("value")), _rest(job.axes, names))
                for job in study.of_stage("train")], sel.metric
    configured = {name for j in study.jobs.values() if j.stage in ("eval", "judge")
                  for name in (j.config.get("benchmarks") or {})}
    if bench not in configured and bench not in primary:
        raise UserError(f"{study.manifest_path}: key 'select.metric': {sel.metric!r} is no benchmark of this study "
                        f"(benchmarks: {', '.join(sorted(configured)) or 'none'}; or validation_loss, "
                        f"validation_<metric>, train/<metric>)")
    metric = metric or primary.get(bench)
    if metric is None:   # configured, no metric named and no result yet: every run is missing
        metric = "?"
    scored: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["stage"] == "train" or r["benchmark"] != bench or r.get("target_kind") == "base" \
                or r["checkpoint"] != sel.checkpoint or r["metric"] not in (metric, ""):
            continue
        key = r["target_job"] or _measured(study, r["job_id"])
        if r["metric"] == metric or key not in scored:
            scored[key] = r
    out = []
    for r in scored.values():
        target = study.jobs.get(r["target_job"] or "")
        axes = (target.axes if target is not None else None) or study.jobs[r["job_id"]].axes
        unit_axes = _run_axes(axes, names)
        for a in names:   # a column the tidy table filled (a merge's dotted axes from its inputs)
            if unit_axes.get(a) is None and r.get(a) is not None:
                unit_axes[a] = r[a]
        out.append((unit_axes, r["value"] if r["metric"] == metric else None, _rest(axes, names)))
    return out, f"{bench}/{metric} (checkpoint {sel.checkpoint})"


def _measured(study: Study, job_id: str) -> str:
    """The eval job a row stands for (a judge job scores its eval job's target): one unit per target."""
    job = study.jobs[job_id]
    return str((job.config.get("target") or {}).get("job") or job_id) if job.stage == "judge" else job_id


# ---------------------------------------------------------------- choosing
def _label(sel: Select, values: tuple) -> str:
    return ", ".join(f"{a}={v}" for a, v in zip(sel.over, values, strict=True))


def _matched(cands: dict[tuple, list[tuple[tuple, float | None]]]) -> tuple[dict[tuple, list[float]], set | None, dict]:
    """Each candidate's finite values on the runs every candidate with a value has (`common`; None when
    they share none: then each keeps all its own runs), and each candidate's runs without a value."""
    have: dict[tuple, dict[tuple, list[float]]] = {}
    missing: dict[tuple, int] = {}
    for c, runs in cands.items():
        for rest, v in runs:
            if v is not None and math.isfinite(v):
                have.setdefault(c, {}).setdefault(rest, []).append(v)
            else:
                missing[c] = missing.get(c, 0) + 1
    common = set.intersection(*(set(r) for r in have.values())) if have else set()
    keep = common if common else None
    vals = {c: [sum(v) / len(v) for rest, v in runs.items() if keep is None or rest in keep] for c, runs in have.items()}
    return vals, keep, missing


def choose(sel: Select, scored: list[Unit], metric_name: str) -> list[dict[str, Any]]:
    """One row per `by` group, groups and candidates in order of first appearance (the spec's order)."""
    groups: dict[tuple, dict[tuple, list[tuple[tuple, float | None]]]] = {}
    skipped: dict[tuple, int] = {}
    for axes, value, rest in scored:
        g = tuple(axes.get(a) for a in sel.by)
        c = tuple(axes.get(a) for a in sel.over)
        if all(v is None for v in c):
            skipped[g] = skipped.get(g, 0) + 1
            groups.setdefault(g, {})
            continue
        groups.setdefault(g, {}).setdefault(c, []).append((rest, value))
    sign = 1.0 if sel.goal == "max" else -1.0
    out = []
    for g, cands in groups.items():
        vals, common, missing = _matched(cands)
        scores = []
        for order, c in enumerate(cands):
            if vals.get(c):
                total = len(cands[c])
                scores.append((sign * sum(vals[c]) / len(vals[c]), -order, c, len(vals[c]), total - len(vals[c])))
        scores.sort(reverse=True)
        notes = []
        row: dict[str, Any] = {**dict(zip(sel.by, g, strict=True)), "metric": metric_name, "goal": sel.goal,
                               "checkpoint": sel.checkpoint, "candidates": len(scores)}
        missing_all = sum(1 for c in cands if not vals.get(c))
        if scores:
            best = scores[0]
            row.update({**dict(zip(sel.over, best[2], strict=True)), "value": sign * best[0], "n": best[3],
                        "n_missing": best[4]})
            if missing.get(best[2]):
                notes.append(f"{missing[best[2]]} of {len(cands[best[2]])} runs of the chosen have no value")
            outside = sum(len({r for r, v in cands[c] if v is not None}) - len(vals[c]) for c in vals)
            if common is not None and outside > 0:
                notes.append(f"compared on the {len(common)} run(s) every candidate has ({outside} other run(s) "
                             "left out)")
            elif common is None and len(scores) > 1:
                notes.append("the candidates share no run: each is scored on all its own runs")
            if len(scores) > 1:
                ru = scores[1]
                row.update({"runner_up": _label(sel, ru[2]), "runner_up_value": sign * ru[0]})
                if abs(best[0] - ru[0]) <= _TIE * max(1.0, abs(best[0])):
                    notes.append(f"tie with {_label(sel, ru[2])}: the first in the spec's order is chosen")
            else:
                notes.append("only one candidate has a value")
        else:
            row.update({**{a: None for a in sel.over}, "value": None, "n": 0,
                        "n_missing": sum(len(v) for v in cands.values())})
            notes.append("no candidate has a value yet")
        if missing_all and scores:
            notes.append(f"{missing_all} candidate(s) without any value left out")
        if skipped.get(g):
            notes.append(f"{skipped[g]} run(s) without a value for {', '.join(sel.over)} are not candidates")
        row["note"] = "; ".join(notes)
        out.append(row)
    return out


def compute(study: Study, rows: list[dict[str, Any]], primary: dict[str, str]) -> tuple[Select, list[dict[str, Any]]] | None:
    sel = parse(study.select, study.axes, study.manifest_path)
    if sel is None:
        return None
    scored, name = units(study, rows, sel, primary)
    return sel, choose(sel, scored, name)


def table(sel: Select, rows: list[dict[str, Any]]) -> Table:
    def cell(v: Any) -> str:
        if v is None:
            return "—"
        return fmt(v) if isinstance(v, float) else str(v)

    cols = [*sel.by, *sel.over, "value", "n", "runner-up", "runner-up value", "candidates", "note"]
    body = [[cell(r.get(a)) for a in (*sel.by, *sel.over)]
            + [cell(r.get("value")), str(r.get("n", 0)), r.get("runner_up") or "—", cell(r.get("runner_up_value")),
               str(r.get("candidates", 0)), r.get("note") or ""] for r in rows]
    metric = rows[0]["metric"] if rows else sel.metric
    by = f" per {', '.join(sel.by)}" if sel.by else ""
    note = (f"goal: {sel.goal} {metric}; a candidate's value is the mean over its runs (seeds and any axis in "
            "neither list); runs without a value are left out of the mean and counted; a tie goes to the "
            "candidate first in the spec's order.")
    return Table(f"Selection: {sel.goal} {sel.metric} over {', '.join(sel.over)}{by}", cols, body, note, "selection")
