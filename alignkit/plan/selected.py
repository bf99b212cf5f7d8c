"""Two-phase studies: a benchmark with `runs: selected` evaluates only the runs `select:` picks.

The compiler makes that benchmark's eval (+judge) job for every trained run (`Plan.awaiting`,
stages.py `selected_eval_jobs`); a job's id is the hash of its config, which names the run and
the benchmark but not the selection, so the ids are the same whichever runs are picked. Nothing
queues them until `alignkit collect` has written the selection (`<sweep>/collect/collect.json`,
"selection": one row per `select.by` group with the chosen values of the `select.over` axes,
alignkit/collect/select.py); then `alignkit submit` (`apply`) moves the jobs of the runs the
selection picks into the plan, and the ordinary submit queues them beside what is already done
(same sweep directory, journal appended, nothing submitted twice). A run is picked when its
`by` values name a group with a chosen candidate and its `over` values are that candidate's
(every run the candidate's score averaged: its seeds, any axis in neither list). Runs of a group
with no choice yet ("no candidate has a value yet") keep waiting; the others are not evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.contract.errors import UserError
from alignkit.plan.model import Job, Plan

SELECTION_FILE = Path("collect") / "collect.json"  # collect's default output, in the sweep directory


def _cell(value: Any) -> str:
    """A value as compared: its JSON text (collect.json's values and a run's own, the same rule)."""
    return json.dumps(value, sort_keys=True)


def run_key(axes: dict[str, Any], names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A run's values of these axes, spelled as collect's selection spells them."""
    from alignkit.collect.select import run_values

    values = run_values(axes, tuple(names))
    return tuple(_cell(values[a]) for a in names)


def run_of(plan: Plan) -> dict[str, str]:
    """Awaiting job id -> the id of the trained run it evaluates (a judge job: its eval job's run)."""
    out: dict[str, str] = {}
    for job in plan.awaiting:  # an eval before its judge (stages.py makes them in that order)
        out[job.id] = job.config.target.job if job.stage == "eval" else out[job.depends_on[0]]
    return out


def read_selection(plan: Plan, sweep_dir: Path) -> list[dict[str, Any]] | None:
    """The selection's groups collect wrote for this sweep; None before any collect. One line naming
    the file and key (UserError) when it is unreadable or was made for another `select:`."""
    path = sweep_dir / SELECTION_FILE
    try:
        digest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not readable as JSON ({type(exc).__name__}); run `alignkit collect "
                        f"{sweep_dir}` again") from None
    sel = digest.get("selection") if isinstance(digest, dict) else None
    want = plan.select or {}
    if not isinstance(sel, dict):
        raise UserError(f"{path}: key 'selection': {'missing' if sel is None else 'not an object'}; run "
                        f"`alignkit collect {sweep_dir}` again (the spec's select: is "
                        f"{want.get('goal')} {want.get('metric')} over {', '.join(want.get('over', []))})")
    for key in ("metric", "goal", "over", "by", "checkpoint"):
        have, spec = sel.get(key), want.get(key)
        if (str(have) if key == "checkpoint" else have) != (str(spec) if key == "checkpoint" else spec):
            raise UserError(f"{path}: key 'selection.{key}': {have!r}, but the spec's select.{key} is {spec!r} "
                            f"(the selection was made for another select:); run `alignkit collect {sweep_dir}` again")
    groups = sel.get("groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise UserError(f"{path}: key 'selection.groups': expected a list of objects")
    return groups


@dataclass
class Applied:
    """What a submit took from the selection."""
    source: Path | None = None  # the file read (None: no selection yet)
    added: list[Job] = field(default_factory=list)  # jobs of picked runs, now in plan.jobs
    runs: int = 0  # runs picked
    dropped: int = 0  # jobs of runs the selection did not pick
    notes: list[str] = field(default_factory=list)  # groups chosen on incomplete data


def apply(plan: Plan, sweep_dir: Path) -> Applied:
    """Move the awaiting jobs of the runs the selection picks into `plan.jobs`; those of groups not
    decided yet stay in `plan.awaiting`; the rest are dropped (they are never queued)."""
    if not plan.awaiting or plan.select is None:
        return Applied()
    groups = read_selection(plan, sweep_dir)
    if groups is None:
        return Applied()
    by, over = tuple(plan.select["by"]), tuple(plan.select["over"])
    chosen: dict[tuple, tuple] = {}
    notes = []
    for g in groups:
        gkey = tuple(_cell(g.get(a)) for a in by)
        if g.get("value") is None:
            continue  # no candidate has a value yet: its runs keep waiting
        chosen[gkey] = tuple(_cell(g.get(a)) for a in over)
        if isinstance(g.get("n_missing"), int) and g["n_missing"] > 0:
            where = ", ".join(f"{a}={g.get(a)!r}" for a in by) or "the study"
            notes.append(f"selection for {where}: chosen with {g['n_missing']} of its runs without a value "
                         f"(collect ran before they ended?)")
    trains = {j.id: j for j in plan.jobs if j.stage == "train"}
    picked: set[str] = set()
    undecided: set[str] = set()
    for jid, t in trains.items():
        axes = t.config.axes
        g = chosen.get(run_key(axes, by))
        if g is None:
            undecided.add(jid)
        elif run_key(axes, over) == g:
            picked.add(jid)
    owner = run_of(plan)
    added = [j for j in plan.awaiting if owner[j.id] in picked]
    waiting = [j for j in plan.awaiting if owner[j.id] in undecided]
    dropped = len(plan.awaiting) - len(added) - len(waiting)
    plan.jobs = plan.jobs + added
    plan.awaiting = waiting
    return Applied(sweep_dir / SELECTION_FILE, added, len(picked), dropped, notes)


def selected_benchmarks(plan: Plan) -> list[str]:
    seen: dict[str, None] = {}
    for job in plan.awaiting:
        if job.stage == "eval":
            seen.update(dict.fromkeys(job.config.benchmarks))
    return list(seen)


def _candidates(plan: Plan) -> dict[tuple, dict[tuple, list[str]]]:
    """`by` group -> candidate (`over` values) -> the runs it covers (those with awaiting jobs)."""
    by, over = tuple(plan.select["by"]), tuple(plan.select["over"])
    owner = set(run_of(plan).values())
    out: dict[tuple, dict[tuple, list[str]]] = {}
    for t in plan.jobs:
        if t.stage == "train" and t.id in owner:
            c = run_key(t.config.axes, over)
            if all(v == "null" for v in c):
                continue  # no value for any `over` axis: not a candidate (collect/select.py)
            out.setdefault(run_key(t.config.axes, by), {}).setdefault(c, []).append(t.id)
    return out


def expected_runs(plan: Plan) -> tuple[int, int] | None:
    """How many runs a selection will pick, fewest and most (each `by` group picks one candidate; a
    candidate covers its seeds and the axes in neither list). None without select."""
    if plan.select is None:
        return None
    groups = _candidates(plan).values()
    return (sum(min(map(len, c.values())) for c in groups), sum(max(map(len, c.values())) for c in groups))


def most_jobs(plan: Plan) -> list[Job]:
    """The awaiting jobs of the largest selection (the largest candidate of each group): what the
    second phase queues at most, for its judge-cost estimate."""
    if plan.select is None:
        return []
    runs = {r for c in _candidates(plan).values() for r in max(c.values(), key=len)}
    owner = run_of(plan)
    return [j for j in plan.awaiting if owner[j.id] in runs]


def summary(plan: Plan) -> dict[str, Any]:
    """plan --json's `summary.awaiting_selection`: the jobs waiting for the selection."""
    stages: dict[str, int] = {}
    for job in plan.awaiting:
        stages[job.stage] = stages.get(job.stage, 0) + 1
    from alignkit.plan.judge_cost import judge_costs

    lo_hi = expected_runs(plan)
    return {"jobs": len(plan.awaiting), "jobs_per_stage": stages, "benchmarks": selected_benchmarks(plan),
            "runs": len(set(run_of(plan).values())),
            "selected_runs": list(lo_hi) if lo_hi is not None else None,
            "judges": judge_costs(most_jobs(plan))}  # at the most runs a selection can pick


def describe(plan: Plan) -> str:
    """The text plan's line for them."""
    s = summary(plan)
    runs = max(1, s["runs"])
    each = " + ".join(f"{n / runs:g} {stage}" for stage, n in s["jobs_per_stage"].items())
    lo, hi = s["selected_runs"] or (0, 0)
    picks = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return (f"  waiting for the selection: {', '.join(s['benchmarks'])} on the {picks} of {s['runs']} runs select: "
            f"picks ({each} job(s) per run; `alignkit collect`, then `alignkit submit` again adds them)")


def manifest_entries(plan: Plan) -> list[dict[str, Any]]:
    """manifest.json's `awaiting_selection`: what status counts as waiting for the selection."""
    owner = run_of(plan)
    return [{"id": j.id, "name": j.name, "stage": j.stage, "run": owner[j.id]} for j in plan.awaiting]
