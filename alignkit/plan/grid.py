"""Grid expansion: a spec's grid, zip, include and exclude -> training-run points (named axes,
then dotted ones), the plan-size refusals, run names, and how axis values compare.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from typing import Any

from alignkit.contract.errors import UserError
from alignkit.contract.schema import join, similar
from alignkit.spec.axes import is_dotted
from alignkit.spec.model import AXES, Spec


DEFAULT_MAX_JOBS = 1_000_000
_COUNTED = 200_000  # grids of up to this many runs (before exclude) are counted exactly (~1 s) when refused
MAX_JOBS_ENV = "ALIGNKIT_MAX_JOBS"


def max_jobs(spec: Spec) -> int:
    """The largest plan accepted: $ALIGNKIT_MAX_JOBS, else the spec's max_jobs, else 1,000,000."""
    raw = os.environ.get(MAX_JOBS_ENV)
    if raw is None:
        return spec.max_jobs or DEFAULT_MAX_JOBS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"${MAX_JOBS_ENV}: must be a positive integer, got {raw!r}")
    return value


def norm_pref(value: str) -> str:
    return "+".join(sorted(str(value).split("+")))


class GridExpansion:
    """The compiler's grid: spec -> training-run points, and the size refusals before anything is built."""

    # ---- grid -------------------------------------------------------------------------------
    def job_bound(self) -> int:
        """An upper bound on the plan's jobs, from list lengths alone (before anything is expanded):
        grid and include points (exclude not yet applied), each with its eval and judge jobs, plus
        every merge's groups, the base-model evals and the targets' evals. Dotted axes count as
        axes."""
        spec = self.spec
        grid_values = {a: list(v) for a, v in spec.grid.items()}
        for group in spec.zip:
            for a, v in group.items():
                grid_values[a] = list(v)
        runs = math.prod(len(v) for v in spec.grid.values()) * math.prod(
            len(next(iter(g.values()), ())) for g in spec.zip) if spec.grid or spec.zip else 0
        for entry in spec.include:
            runs += math.prod(len(entry[a]) if isinstance(entry.get(a), (list, tuple)) else
                              1 if a in entry else len(grid_values.get(a, ())) for a in AXES) * math.prod(
                len(v) if isinstance(v, (list, tuple)) else 1 for a, v in entry.items() if is_dotted(a))
        per_run = 1 + (1 if spec.evals.benchmarks else 0) + (1 if any(b.judge for b in spec.evals.benchmarks.values())
                                                              else 0)
        merges = sum(runs // max(1, math.prod(len(v) for v in m.combine.values())) for m in spec.merges)
        self.runs_bound = runs
        return runs * per_run + merges * per_run + (len(spec.models) + len(spec.targets)) * per_run

    def check_size(self) -> bool:
        """Refuse a grid of more training runs than the limit (and than _COUNTED) before expanding
        anything, from list lengths; True where the bound passes the limit but the runs are few
        enough to expand: count_jobs() then counts the real jobs."""
        limit, bound = max_jobs(self.spec), self.job_bound()
        if bound > limit and self.runs_bound > max(limit, _COUNTED):
            self.problems.add("grid", f"the grid expands to up to {bound:,} jobs, beyond the limit of {limit:,} "
                                      f"(refused before expanding; raise it with max_jobs or ${MAX_JOBS_ENV})")
            self.problems.raise_if_any()
        return bound > limit

    def refuse_if_over(self, points: list[dict[str, Any]]) -> None:
        limit, jobs = max_jobs(self.spec), self.count_jobs(points)
        if jobs > limit:
            self.problems.add("grid", f"the grid expands to {jobs:,} jobs, beyond the limit of {limit:,} "
                                      f"(refused before compiling them; raise it with max_jobs or ${MAX_JOBS_ENV})")
            self.problems.raise_if_any()

    def count_jobs(self, points: list[dict[str, Any]]) -> int:
        """The jobs these runs compile to, counted without building them: each run's train, eval
        and judge jobs (at evals.checkpoints), each merge's complete groups with their evals, the
        base-model and target evals. A dotted training axis that moves a run's checkpoints can
        change its eval count; the compiled plan is then the count that matters."""
        def evals(checkpoints: list[Any]) -> int:
            at, _, judged, _ = self._benchmarks_at(checkpoints)
            return (1 if at else 0) + (1 if judged else 0)

        jobs = len(points) * (1 + evals(self.checkpoints()))
        for m in self.spec.merges:
            combine_axes = [a for a in AXES if a in m.combine]
            combine_vals = {a: {hkey(norm_pref(v) if a == "preference" else v) for v in m.combine[a]}
                            for a in combine_axes}
            groups: dict[tuple, set] = {}
            for p in points:
                if matches(p, m.where) and all(hkey(p[a]) in combine_vals[a] for a in combine_axes):
                    shared = tuple((a, hkey(p[a])) for a in self.axes if a in p and a not in m.combine)
                    groups.setdefault(shared, set()).add(tuple(hkey(p[a]) for a in combine_axes))
            complete = sum(1 for g in groups.values() if len(g) == math.prod(len(v) for v in combine_vals.values()))
            jobs += complete * (1 + (evals(["final"]) if m.evaluate else 0))
        models = len({p["model"] for p in points}) if self.spec.evals.base_models else 0
        return jobs + (models + len(self.spec.targets)) * evals(["final"])

    def _block(self, axis: str, values: Any, path: str) -> list[dict[str, Any]]:
        if is_dotted(axis):
            self._note_origin(axis, values, path)
        return [{axis: v} for v in (values if isinstance(values, (list, tuple)) else [values])]

    def _note_origin(self, axis: str, values: Any, path: str) -> None:
        """Where a dotted axis and each of its values are first given, for problems about them."""
        self.origin.setdefault(axis, path)
        if isinstance(values, (list, tuple)):
            for i, v in enumerate(values):
                self.origin.setdefault((axis, value_key(v)), join(path, i))

    def points(self) -> list[dict[str, Any]]:
        spec = self.spec
        over = self.check_size()
        blocks: list[list[dict[str, Any]]] = []
        for axis in AXES:  # canonical axis order, whatever the YAML's order
            if axis in spec.grid:
                blocks.append([{axis: v} for v in spec.grid[axis]])
        for axis in spec.grid:
            if is_dotted(axis):
                blocks.append(self._block(axis, spec.grid[axis], join("grid", axis)))
        for gi, group in enumerate(spec.zip):
            for a in group:
                if is_dotted(a):
                    self._note_origin(a, group[a], join(join("zip", gi), a))
            n = len(next(iter(group.values())))
            blocks.append([{a: group[a][i] for a in group} for i in range(n)])
        base = [self._norm({k: v for d in combo for k, v in d.items()}) for combo in itertools.product(*blocks)] \
            if spec.grid or spec.zip else []
        values = {axis: list(dict.fromkeys(p[axis] for p in base)) for axis in AXES}
        extra = []
        for i, entry in enumerate(spec.include):  # sub-grids; unnamed named axes take every value of the main grid
            axes = [[{a: v} for v in (entry[a] if isinstance(entry[a], (list, tuple)) else [entry[a]])]
                    if a in entry else [{a: v} for v in values[a]] for a in AXES]
            axes += [self._block(a, v, join(join("include", i), a)) for a, v in entry.items() if is_dotted(a)]
            extra += [self._norm({k: v for d in combo for k, v in d.items()}) for combo in itertools.product(*axes)]
        points, seen = [], set()
        for p in base + extra:
            key = tuple([(a, hkey(p[a])) for a in self.axes if a in p])
            if key not in seen and not any(matches(p, ex) for ex in spec.exclude):
                seen.add(key)
                points.append(p)
        if not points and not spec.targets:
            self.problems.add("grid", "the grid expands to no training runs (check exclude)")
        if over:
            self.refuse_if_over(points)
        return points

    def _norm(self, point: dict[str, Any]) -> dict[str, Any]:
        point["preference"] = norm_pref(point["preference"])
        return {a: point[a] for a in self.axes if a in point}  # named axes, then dotted in spec order

    def run_name(self, p: dict[str, Any]) -> str:
        return "/".join([_label(a, p[a]) for a in AXES] + [
            f"{self.labels[a]}={_value_label(p[a])}" for a in self.dotted if a in p])


def _label(axis: str, value: Any) -> str:
    return f"s{value}" if axis == "seed" else str(value)


# Short names for dotted-axis labels in run names (`.../beta=0.1/lr=5e-06`)
_SHORT = {"learning_rate": "lr", "max_steps": "steps", "batch_size": "bs", "per_device_batch_size": "pdbs",
          "warmup_ratio": "warmup", "weight_decay": "wd", "max_length": "maxlen", "max_prompt_length": "promptlen"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-]")


def dotted_labels(dotted: list[str]) -> dict[str, str]:
    """Each dotted axis's label: its last field (shortened), or its path below the section where
    two axes would share a label."""
    short = {a: _SHORT.get(a.rsplit(".", 1)[1], a.rsplit(".", 1)[1]) for a in dotted}
    clash = {v for v in short.values() if list(short.values()).count(v) > 1}
    return {a: a.partition(".")[2] if short[a] in clash else short[a] for a in dotted}


def _value_label(value: Any) -> str:
    """A value as a short, filesystem-safe name part (5e-06, 0.1, q_proj+v_proj, none)."""
    if isinstance(value, (list, tuple)):
        text = "+".join(_value_label(v) for v in value)
    elif value is None:
        text = "none"
    else:
        text = repr(value) if isinstance(value, float) else str(value)
    return _UNSAFE.sub("_", text)[:64]


def value_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


_SCALARS = (str, int, float, bool, type(None))


def hkey(value: Any) -> Any:
    """A hashable key equal for values equal as JSON: a scalar with its type (1, 1.0 and True
    stay apart, as their JSON does), anything else its JSON text."""
    kind = type(value)
    if kind is float:
        return kind, repr(value)  # -0.0 and 0.0 differ in JSON
    return (kind, value) if kind in _SCALARS else json.dumps(value, default=str)


def has_path(cfg: Any, rest: str) -> bool:
    for part in rest.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return False
        cfg = cfg[part]
    return True


def close_path(cfg: Any, rest: str) -> str | None:
    """A typo's likely meaning: the path with its first missing part replaced by a similar key
    at that level (method.lora.rank -> lora.r is too far; lora.alpah -> lora.alpha is not)."""
    parts = rest.split(".")
    for i, part in enumerate(parts):
        if not isinstance(cfg, dict):
            return None
        if part not in cfg:
            close = [k for k in cfg if similar(str(k), part)]
            return ".".join(parts[:i] + [close[0]] + parts[i + 1:]) if close else None
        cfg = cfg[part]
    return None


def get_path(cfg: Any, rest: str) -> Any:
    for part in rest.split("."):
        cfg = cfg[part]
    return cfg


def matches(axes: dict[str, Any], where: dict[str, Any]) -> bool:
    for axis, want in where.items():
        values = list(want) if isinstance(want, (list, tuple)) else [want]
        if axis == "preference":
            values = [norm_pref(v) for v in values]
        if axis not in axes or not any(same_value(axes[axis], v) or same_value(own_value(axis, axes[axis]), v) for v in values):
            return False
    return True


def own_value(axis: str, value: Any) -> Any:
    """A chained run's method label `sft>dpo` is its method `dpo` wherever a method is named."""
    return value.rsplit(">", 1)[-1] if axis == "method" and isinstance(value, str) else value


def same_value(a: Any, b: Any) -> bool:
    """Equal, or the same number however YAML typed it (PyYAML reads 5e-6 as a string, 5.0e-6 as
    a float; a dotted axis's value is converted to the field's type after `exclude` is applied)."""
    if a == b:
        return True
    try:
        return not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b)
    except (TypeError, ValueError):
        return False
