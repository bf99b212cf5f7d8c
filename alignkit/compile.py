"""Spec → plan: expand the grid into train, eval, judge and merge jobs with dependencies.

Each job carries a fully resolved config and a content-hash id: the sha256 of the canonical
JSON of what affects its result (labels such as names and axes, and resources, are left out).
The same resolved config gives the same id whatever the YAML's key order, formatting or axis
order; a change to anything that affects a result gives a new id, and since a job names its
inputs by id, its dependents' ids change too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import functools
import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from alignkit.plugins.benchmarks import resolve_config
from alignkit.canonical import Encoder
from alignkit.errors import SpecError, UserError
from alignkit.judge_cost import judge_costs
from alignkit.profiles import Profile, load_profile
from alignkit.schema import Problems, join, one_line, plain, similar
from alignkit.plugins.methods import resolve_config as method_config
from alignkit.estimates import estimate as estimate_costs
from alignkit.reference import summarize as reference_summary
from alignkit.spec import (AXES, BenchmarkSpec, DatasetSpec, MergeSpec, ModelSpec, Spec,
                           TargetSpec, TrainingSpec, is_dotted, load_spec, local_path_issues, output_dir_problem,
                           check_run, override_section, parse_time, provided_preferences, resolve_source, section_entry,
                           swept_axes)

ID_LEN = 12

# Used where neither the profile nor the spec says otherwise (docs/spec.md lists them).
BUILTIN_RESOURCES: dict[str, dict[str, Any]] = {
    "train": {"gpus": 1, "cpus": 8, "mem_gb": 64, "time": "04:00:00", "nodes": 1, "array_parallelism": 64},
    "eval": {"gpus": 1, "cpus": 8, "mem_gb": 64, "time": "04:00:00", "nodes": 1, "array_parallelism": 64},
    "merge": {"gpus": 0, "cpus": 8, "mem_gb": 64, "time": "01:00:00", "nodes": 1, "array_parallelism": 16},
    "judge": {"gpus": 0, "cpus": 2, "mem_gb": 8, "time": "02:00:00", "nodes": 1, "array_parallelism": 8},
}
_RESOURCE_KEYS = ("gpus", "cpus", "mem_gb", "time", "nodes", "partition", "account", "qos", "constraint",
                  "array_parallelism", "estimate")
_SLURM_PLACEMENT = ("partition", "account", "qos", "constraint")  # profile-wide, overridable per stage


@dataclass(frozen=True)
class Resources:
    gpus: int
    cpus: int
    mem_gb: int
    time_min: int
    nodes: int
    partition: str | None
    array_parallelism: int
    estimate_min: float
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None

    def key(self) -> tuple:
        """The resource class: jobs of one stage with the same key are submitted as one array."""
        return (self.gpus, self.cpus, self.mem_gb, self.time_min, self.nodes, self.partition,
                self.array_parallelism, self.account, self.qos, self.constraint)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    stage: str
    depends_on: tuple[str, ...]
    config: dict
    resources: Resources

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "stage": self.stage, "depends_on": list(self.depends_on),
                "config": self.config, "resources": self.resources.to_json()}


@dataclass
class Plan:
    sweep: str
    spec_path: Path
    spec_text: str
    output_dir: Path
    jobs: list[Job]
    profile: Profile
    spec_lines: dict[str, int] = dataclasses.field(default_factory=dict)  # YAML path -> line, for messages
    # what is fine to plan but not to run: local paths that do not exist yet, judges' unset API keys
    not_ready: list[str] = dataclasses.field(default_factory=list)
    # the manifest's axes (named, then the dotted ones jobs carry) and selection (null: none)
    axes: list[str] = dataclasses.field(default_factory=lambda: list(AXES))
    select: dict[str, Any] | None = None
    # sub-configs many jobs hold (one object each): `plan --json` encodes each once (alignkit/planjson.py)
    shared: list[Any] = dataclasses.field(default_factory=list, repr=False, compare=False)

    def by_id(self) -> dict[str, Job]:
        return {j.id: j for j in self.jobs}

    def array_keys(self) -> dict[str, tuple]:
        """Job id -> the array it is submitted in: one per stage, resource class and upstream
        array (that of its single dependency), so each eval array lines up element-wise with the
        train or merge array it follows (aftercorr), and each judge array with its eval array."""
        by_id = self.by_id()
        keys: dict[str, tuple] = {}
        classes: dict[int, tuple] = {}  # id(Resources) -> its key(): jobs share Resources objects

        def key(job: Job) -> tuple:
            if job.id not in keys:
                # a job with several inputs (a merge) waits on each through afterok: no upstream array
                up = by_id.get(job.depends_on[0]) if len(job.depends_on) == 1 else None
                r = classes.get(id(job.resources))
                if r is None:
                    r = classes[id(job.resources)] = job.resources.key()
                keys[job.id] = (job.stage, r, key(up) if up else None)
            return keys[job.id]

        for job in self.jobs:
            key(job)
        return keys

    def summary(self) -> dict[str, Any]:
        stages: dict[str, int] = {}
        arrays: dict[tuple, dict[str, Any]] = {}
        keys = self.array_keys()
        for job in self.jobs:
            stages[job.stage] = stages.get(job.stage, 0) + 1
            r = job.resources
            arr = arrays.get(keys[job.id])
            if arr is None:  # made once per array, not once per job
                arr = arrays[keys[job.id]] = {"stage": job.stage, "after": _upstream(keys[job.id]), "jobs": 0, **{
                    k: getattr(r, k) for k in ("gpus", "cpus", "mem_gb", "time_min", "nodes", "partition",
                                               "account", "qos", "constraint", "array_parallelism")}}
            arr["jobs"] += 1
        train = [j for j in self.jobs if j.stage == "train"]
        # evaluation from measured (or stated-guess) rates, the rest from the stages' `estimate`
        costs = estimate_costs(self.jobs, keys)
        gpu_hours = {k: v["gpu_hours"] for k, v in costs["stages"].items()}
        return {
            "jobs": len(self.jobs),
            "jobs_per_stage": stages,
            "training_runs": len(train),
            "mixture_runs": sum(1 for j in train if len(j.config["preference"]) > 1),
            "arrays": list(arrays.values()),
            "gpu_hours": {k: round(v, 2) for k, v in gpu_hours.items()},
            "gpu_hours_total": round(sum(gpu_hours.values()), 2),
            "judges": judge_costs(self.jobs),
            **reference_summary(self.jobs),  # shared DPO reference passes (alignkit/reference.py)
            "estimates": costs,
        }

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "sweep": self.sweep, "spec": str(self.spec_path), "output_dir": str(self.output_dir),
                "profile": self.profile.name, "axes": self.axes, "select": self.select,
                "jobs": [j.to_json() for j in self.jobs], "summary": self.summary()}


# What names, prices or reports things, not what a job computes: left out of job ids at any depth.
# `tracking` (where a run is reported) never changes a result, so a new tracker reuses finished jobs.
_LABELS = ("name", "axes", "input_axes", "paper_name", "price_per_million_tokens", "tracking")


def _identity(value: Any) -> Any:
    """The part of a config that affects the result: labels (names, axes, tracking) are dropped."""
    if isinstance(value, dict):
        return {k: _identity(v) for k, v in value.items() if k not in _LABELS}
    if isinstance(value, (list, tuple)):
        return [_identity(v) for v in value]
    return value


def job_id(config: dict, encoder: Encoder | None = None) -> str:
    """The sha256 of the canonical JSON of what affects the result. An `id_encoder()` gives the
    same text, encoding the sub-configs it was told are shared once (the compiler's path)."""
    if encoder is not None:
        canonical = encoder.encode(config)
    else:
        canonical = json.dumps(_identity(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:ID_LEN]


def id_encoder() -> Encoder:
    return Encoder(canonical=True, drop=_LABELS)


def _local_path(spec: Spec, source: str) -> str:
    """Local paths become absolute (relative ones are relative to the spec file); hub ids stay."""
    return resolve_source(spec.path.parent, source)


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


def _norm_pref(value: str) -> str:
    return "+".join(sorted(str(value).split("+")))


class _Compiler:
    def __init__(self, spec: Spec, profile: Profile):
        self.spec = spec
        self.profile = profile
        self.problems = spec.problems()
        self._cache: dict[tuple, Any] = {}  # resolved sub-configs, shared (read-only) between jobs
        self.ids = id_encoder()  # job ids: each shared sub-config's canonical JSON made once
        self._resources: dict[tuple, Resources] = {}  # one object per stage and override match
        self._override_axes: dict[str, list[str]] = {}  # stage -> the axes its resource overrides match on
        self.axes = swept_axes(spec)  # named axes, then dotted ones in spec order
        self.dotted = [a for a in self.axes if is_dotted(a)]
        self.labels = _dotted_labels(self.dotted)
        self.origin: dict[Any, str] = {}  # dotted axis (and (axis, value)) -> the YAML path first giving it
        self._told: set[tuple] = set()  # per-run problems already reported once
        self._training: dict[str, TrainingSpec] = {}  # train job id -> its training section

    def _cached(self, key: tuple, make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
            self.ids.share(self._cache[key])
        return self._cache[key]

    def _once(self, key: tuple, path: str, message: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self.problems.add(path, message)

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
            combine_vals = {a: {_hkey(_norm_pref(v) if a == "preference" else v) for v in m.combine[a]}
                            for a in combine_axes}
            groups: dict[tuple, set] = {}
            for p in points:
                if _matches(p, m.where) and all(_hkey(p[a]) in combine_vals[a] for a in combine_axes):
                    shared = tuple((a, _hkey(p[a])) for a in self.axes if a in p and a not in m.combine)
                    groups.setdefault(shared, set()).add(tuple(_hkey(p[a]) for a in combine_axes))
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
                self.origin.setdefault((axis, _vkey(v)), join(path, i))

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
        base = [self._norm(dict(kv for d in combo for kv in d.items())) for combo in itertools.product(*blocks)] \
            if spec.grid or spec.zip else []
        values = {axis: list(dict.fromkeys(p[axis] for p in base)) for axis in AXES}
        extra = []
        for i, entry in enumerate(spec.include):  # sub-grids; unnamed named axes take every value of the main grid
            axes = [[{a: v} for v in (entry[a] if isinstance(entry[a], (list, tuple)) else [entry[a]])]
                    if a in entry else [{a: v} for v in values[a]] for a in AXES]
            axes += [self._block(a, v, join(join("include", i), a)) for a, v in entry.items() if is_dotted(a)]
            extra += [self._norm(dict(kv for d in combo for kv in d.items())) for combo in itertools.product(*axes)]
        points, seen = [], set()
        for p in base + extra:
            key = tuple((a, _hkey(p[a])) for a in self.axes if a in p)
            if key not in seen and not any(_matches(p, ex) for ex in spec.exclude):
                seen.add(key)
                points.append(p)
        if not points and not spec.targets:
            self.problems.add("grid", "the grid expands to no training runs (check exclude)")
        if over:
            self.refuse_if_over(points)
        return points

    def _norm(self, point: dict[str, Any]) -> dict[str, Any]:
        point["preference"] = _norm_pref(point["preference"])
        return {a: point[a] for a in self.axes if a in point}  # named axes, then dotted in spec order

    def run_name(self, p: dict[str, Any]) -> str:
        return "/".join([_label(a, p[a]) for a in AXES] + [
            f"{self.labels[a]}={_value_label(p[a])}" for a in self.dotted if a in p])

    # ---- a run's sections, dotted axes in place ----------------------------------------------------
    def sections(self, p: dict[str, Any], name: str) -> dict[str, Any] | None:
        """The run's section entries ({section: spec object}) with its dotted axes in place; the
        dotted values in `p` become the converted ones. None after a problem."""
        spec = self.spec
        entries = {"model": p["model"], "dataset": p["dataset"], "method": p["method"], "peft": p["peft"],
                   "training": None}
        out = {s: section_entry(spec, s, e) for s, e in entries.items()}
        wanted: dict[str, dict[str, Any]] = {}
        ok = True
        for axis in self.dotted:
            if axis not in p:
                continue
            section, _, rest = axis.partition(".")
            entry = entries[section]
            at = self.origin.get(axis, "grid")
            resolved = self.section_config(section, entry, out[section], out)
            if not _has_path(resolved, rest):
                what = f"{section} '{entry}'" if entry else section
                close = _close_path(resolved, rest)
                way_out = (f"did you mean '{section}.{close}'?" if close else
                           f"sweep it only where it applies: an include block per {section}, e.g. include: "
                           f"[{{{section}: <name>, {axis}: [...]}}]")
                self._once(("missing", axis, entry), at,
                           f"axis '{axis}' does not exist for run '{name}' ({what} has no '{rest}' in its resolved "
                           f"config); {way_out}")
                ok = False
                continue
            value = p[axis]
            vkey = _vkey(value)
            one, problems = self._cached(("override", section, entry, rest, vkey),
                                         functools.partial(override_section, spec, section, entry, {rest: value}))
            for message in problems:
                self._once(("bad", axis, entry, vkey), self.origin.get((axis, vkey), at),
                           f"{axis}={value!r} ({section} '{entry}'): {message}" if entry else f"{axis}={value!r}: {message}")
            ok = ok and not problems
            wanted.setdefault(section, {})[rest] = value
        if not ok:
            return None
        for section, values in wanted.items():
            key = json.dumps(values, sort_keys=True, default=str)
            new, problems = self._cached(("override", section, entries[section], key),
                                         functools.partial(override_section, spec, section, entries[section], values))
            for message in problems:
                self._once(("run", name, message), "grid", f"run '{name}': {message}")
            if problems:
                return None
            out[section] = new
            data = plain(new)
            for rest in values:  # the label holds the value as the spec would (5e-6 read as a number)
                p[f"{section}.{rest}"] = _get_path(data, rest)
        if wanted and not self._run_rules(out, entries, wanted, p, name):
            return None
        return out

    def _run_rules(self, out: dict[str, Any], entries: dict[str, Any], wanted: dict[str, dict[str, Any]],
                   p: dict[str, Any], name: str) -> bool:
        """The method's spec-wide rules on this run, its dotted values in place (spec.check_run)."""
        names = {s: e for s, e in entries.items() if e is not None}
        key = json.dumps([names, wanted], sort_keys=True, default=str)
        problems = self._cached(("run-rules", key), lambda: check_run(self.spec, out, names))
        at = next((self.origin.get(a, "grid") for a in self.dotted if a in p), "grid")
        for message in problems:
            self._once(("run-rule", message), at, f"run '{name}': {message} (set by a dotted axis)")
        return not problems

    def section_config(self, section: str, entry: str | None, obj: Any, sections: dict[str, Any]) -> dict[str, Any]:
        if section == "model":
            return self.model_config(entry, obj)
        if section == "dataset":
            return self.dataset_config(entry, obj)
        if section == "method":
            return self.method_config(entry, obj)
        if section == "peft":
            return self._cached(("peft", entry, id(obj)), lambda: {"name": entry, **plain(obj)})
        return self.training_config(obj, sections["dataset"].validation is not None)

    # ---- configs ------------------------------------------------------------------------------
    def model_config(self, name: str, m: ModelSpec | None = None) -> dict[str, Any]:
        m = m or self.spec.models[name]
        return self._cached(("model", name, id(m)), lambda: {**plain(m), "name": name,
                                                             "source": _local_path(self.spec, m.source)})

    def dataset_config(self, name: str, ds: DatasetSpec) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            cfg = {"name": name, **plain(ds), "source": _local_path(self.spec, ds.source)}
            for key in ("files", "validation"):  # written only when used: old studies' ids stay
                if cfg[key] is None:
                    del cfg[key]
            if "files" in cfg:
                cfg["files"] = {k: _local_path(self.spec, v) for k, v in cfg["files"].items()}
            if "validation" in cfg:
                cfg["validation"] = {k: v for k, v in cfg["validation"].items() if v is not None}
                if "split" in cfg["validation"]:
                    cfg["validation"].pop("seed")  # a named split is not drawn: no seed
            return cfg
        return self._cached(("dataset", name, id(ds)), make)

    def method_config(self, name: str, method: Any) -> dict[str, Any]:
        return self._cached(("method", name, id(method)), lambda: self._method_config(name, method))

    def training_config(self, t: TrainingSpec, validation: bool) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            cfg = plain(t)
            if validation:  # null: validate where checkpoints are saved
                cfg["eval_steps"] = t.eval_steps or t.save_steps
            else:
                del cfg["eval_steps"]  # absent without validation: old studies' ids stay
            return cfg
        return self._cached(("training", id(t), validation), make)

    def train_config(self, p: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
        return {
            "stage": "train",
            "axes": dict(p),
            "model": self.model_config(p["model"], s["model"]),
            "dataset": self.dataset_config(p["dataset"], s["dataset"]),
            "preference": p["preference"].split("+"),
            "method": self.method_config(p["method"], s["method"]),
            "peft": self.section_config("peft", p["peft"], s["peft"], s),
            "training": self.training_config(s["training"], s["dataset"].validation is not None),
            "seed": p["seed"],
        }

    def _method_config(self, name: str, method: Any) -> dict[str, Any]:
        return method_config(name, method)  # the method's own resolve (alignkit/plugins/methods/)

    def check_preferences(self, p: dict[str, Any], ds: DatasetSpec) -> bool:
        """A run's preference must be one its dataset provides (subsets, files or its format)."""
        provided = provided_preferences(ds)
        if provided is None:
            return True
        ok = True
        dp = join("datasets", p["dataset"])
        for part in p["preference"].split("+"):
            if part in provided:
                continue
            ok = False
            if ds.subsets is not None or ds.files is not None:
                key = "subsets" if ds.subsets is not None else "files"
                self._once(("pref", p["dataset"], part), join(dp, key),
                           f"no {'subset' if key == 'subsets' else 'file'} for preference '{part}', which the grid "
                           f"trains on with dataset '{p['dataset']}' (it has: {', '.join(sorted(provided)) or 'none'}; "
                           f"or exclude: [{{dataset: {p['dataset']}, preference: {part}}}])")
            else:
                self._once(("pref", p["dataset"], part), "grid.preference",
                           f"dataset '{p['dataset']}' ({ds.format}) provides {', '.join(provided)}, not '{part}' "
                           f"(exclude: [{{dataset: {p['dataset']}, preference: {part}}}] skips those runs)")
        return ok

    def checkpoints(self, values: tuple | None = None, t: TrainingSpec | None = None,
                    run: str | None = None) -> list[Any]:
        """Steps in order, then "final" (max_steps counts as final): evals.checkpoints by default."""
        values = self.spec.evals.checkpoints if values is None else values
        t = t or self.spec.training
        steps = sorted({c for c in values if c != "final" and c != t.max_steps})
        has_final = any(c in ("final", t.max_steps) for c in values)
        for c in steps:  # a dotted training axis can move max_steps/save_steps under a run
            if c > t.max_steps or c % t.save_steps:
                self._once(("ckpt", c, t.max_steps, t.save_steps), "evals.checkpoints",
                           f"step {c} is not saved by run '{run}' (training.max_steps {t.max_steps}, save_steps "
                           f"{t.save_steps}); give steps every run saves, or only 'final'")
        return steps + (["final"] if has_final else [])

    def benchmark_config(self, b: BenchmarkSpec, model: dict[str, Any], with_judge: bool,
                         at: list[Any]) -> dict[str, Any]:
        return self._cached(("benchmark", id(b), model.get("lm_eval_chat_template", False), with_judge,
                             tuple(map(str, at))),
                            lambda: {**self._benchmark_config(b, model, with_judge), "checkpoints": at})

    def _benchmark_config(self, b: BenchmarkSpec, model: dict[str, Any], with_judge: bool) -> dict[str, Any]:
        # ISSUE-13 EVAL seam: the per-type part lives in alignkit/benchmarks (one module per type)
        return resolve_config("", b, model, with_judge, spec=self.spec)

    def _benchmarks(self, benchmarks: dict[str, BenchmarkSpec], model: dict[str, Any], with_judge: bool,
                    at: dict[str, list[Any]]) -> dict[str, Any]:
        """{name: benchmark_config}, one dict shared by every job with the same benchmarks, model
        and checkpoints (their ids encode it once)."""
        # keyed as benchmark_config is (the model enters through lm_eval_chat_template only); `at`
        # and `benchmarks` come from the cache (_benchmarks_at), so their ids stay theirs
        return self._cached(("benchmarks", model.get("lm_eval_chat_template", False), with_judge, id(at),
                             id(benchmarks)),
                            lambda: {n: self.benchmark_config(b, model, with_judge, at[n]) for n, b in benchmarks.items()})

    def eval_jobs(self, target: Job, kind: str, checkpoints: list[Any]) -> list[Job]:
        return self._eval_and_judge(target.name, target.config["axes"], target.config["model"],
                                    {"job": target.id, "kind": kind}, checkpoints, (target.id,))

    def base_eval_jobs(self, model_name: str) -> list[Job]:
        """The untrained base model, evaluated like a run (the paper's "Original" rows)."""
        axes = {"model": model_name, "dataset": None, "preference": "original", "method": None, "peft": None,
                "seed": None}
        return self._eval_and_judge(f"{model_name}/original", axes, self.model_config(model_name),
                                    {"kind": "base"}, ["final"], ())

    def target_jobs(self, name: str, t: TargetSpec) -> list[Job]:
        """An adapter or model that exists already: eval (+judge) jobs at its one checkpoint, no
        training dependency. An adapter loads on its base model's config; a full model is a base
        model of its own (the base's template and dtype when `base` is given)."""
        axes: dict[str, Any] = {a: None for a in AXES}
        axes.update({a: t.axes[a] for a in self.axes if a in t.axes})
        axes["model"] = t.base if t.base is not None else name
        axes["target"] = name
        source = _local_path(self.spec, t.source)
        if t.type == "adapter":
            model = self.model_config(t.base)
            target = {"kind": "external", "name": name, "source": source, "revision": t.revision}
        else:
            m = self.spec.models[t.base] if t.base is not None else ModelSpec(source=t.source)
            model = {**plain(m), "name": axes["model"], "source": source, "revision": t.revision or "main"}
            target = {"kind": "base"}
        jobs = self._eval_and_judge(f"target:{name}", axes, model, target, ["final"], ())
        if not jobs:
            self.problems.add(join("targets", name), "no benchmark runs at 'final', so this target has nothing to "
                                                     "evaluate (add evals.benchmarks)")
        return jobs

    def _benchmarks_at(self, checkpoints: list[Any]) -> tuple[dict[str, list[Any]], dict[str, BenchmarkSpec],
                                                              dict[str, BenchmarkSpec], list[Any]]:
        """Each benchmark's checkpoints among these, the benchmarks with any, the judged ones among
        them, the checkpoints loaded."""
        at: dict[str, list[Any]] = {}
        for n, b in self.spec.evals.benchmarks.items():
            wanted = set(self.checkpoints(b.checkpoints) if b.checkpoints is not None else checkpoints)
            if here := [c for c in checkpoints if c in wanted]:
                at[n] = here
        benchmarks = {n: b for n, b in self.spec.evals.benchmarks.items() if n in at}
        judged = {n: b for n, b in benchmarks.items() if b.judge}
        loaded = [c for c in checkpoints if any(c in v for v in at.values())]
        self.ids.share(loaded)
        return at, benchmarks, judged, loaded

    def _eval_and_judge(self, name: str, axes: dict[str, Any], model: dict[str, Any], target: dict[str, Any],
                        checkpoints: list[Any], deps: tuple[str, ...]) -> list[Job]:
        """One eval job over the target's checkpoints, each benchmark at its own ones (a benchmark's
        `checkpoints` in its config), and one judge job for the judged benchmarks' generations."""
        at, benchmarks, judged, loaded = self._cached(("at", tuple(checkpoints)),
                                                      lambda: self._benchmarks_at(checkpoints))
        if not at:
            return []
        cfg = {"stage": "eval", "axes": axes, "model": model, "target": target, "checkpoints": loaded,
               "benchmarks": self._benchmarks(benchmarks, model, False, at)}
        if self.spec.evals.generation is not None:  # only when set: other studies' ids do not move
            cfg["generation"] = plain(self.spec.evals.generation)
        ev = self._job(f"{name}/eval", "eval", deps, cfg)
        jobs = [ev]
        if judged:
            jcfg = {"stage": "judge", "axes": axes, "target": {"job": ev.id},
                    "benchmarks": self._benchmarks(judged, model, True, at)}
            jobs.append(self._job(f"{name}/judge", "judge", (ev.id,), jcfg))
        return jobs

    def merge_jobs(self, index: int, m: MergeSpec, trains: list[Job]) -> list[Job]:
        combine_axes = [a for a in AXES if a in m.combine]
        combine_vals = {a: [_norm_pref(v) if a == "preference" else v for v in m.combine[a]] for a in combine_axes}
        groups: dict[tuple, tuple[dict[str, Any], dict[tuple, Job]]] = {}
        for t in trains:
            axes = t.config["axes"]
            if not _matches(axes, m.where) or any(_own(a, axes[a]) not in combine_vals[a] for a in combine_axes):
                continue
            # every other axis, dotted ones too, is shared by a merge's inputs
            shared = {a: axes[a] for a in self.axes if a in axes and a not in m.combine}
            gkey = tuple((a, _hkey(v)) for a, v in shared.items())
            groups.setdefault(gkey, (shared, {}))[1][tuple(_own(a, axes[a]) for a in combine_axes)] = t
        jobs = []
        for shared, members in groups.values():
            combos = list(itertools.product(*(combine_vals[a] for a in combine_axes)))
            if not all(c in members for c in combos):
                continue  # some input of this group is not trained in this study
            inputs = [members[c] for c in combos]
            first = inputs[0].config.get("init")
            if any(t.config.get("init") != first for t in inputs) and any((t.config.get("init") or {}).get("mode") == "merge" for t in inputs):
                self._once(("chain-merge", m.name), join("merges", index),
                           f"merge '{m.name}' combines runs on different bases (a chained init_mode: merge run "
                           f"trains on its own merged upstream): combine runs of init_mode continue or plain runs")
                continue
            # the shared named axes, then the combined ones (as before issue 13: configs stay byte-for-byte),
            # then the dotted ones
            axes = {a: shared[a] for a in AXES if a in shared}
            for a in combine_axes:
                axes[a] = "{" + ",".join(map(str, combine_vals[a])) + "}"
            axes.update((a, shared[a]) for a in self.dotted if a in shared)
            axes["merge"] = m.name
            cfg = {"stage": "merge", "axes": axes, "model": inputs[0].config["model"],
                   "merge": {"name": m.name, "method": m.method, "parameters": plain(m.parameters)},
                   "inputs": [t.id for t in inputs], "input_axes": [t.config["axes"] for t in inputs]}
            name = f"{m.name}:" + self.run_name(axes)
            merged = self._job(name, "merge", tuple(t.id for t in inputs), cfg)
            jobs.append(merged)
            if m.evaluate:
                jobs += self.eval_jobs(merged, "merged", ["final"])
        if not jobs:
            self.problems.add(join("merges", index), f"merge '{m.name}' finds no trained runs to combine "
                                                     f"(every input must be in the grid)")
        return jobs

    # ---- jobs and resources ---------------------------------------------------------------------
    def _job(self, name: str, stage: str, deps: tuple[str, ...], config: dict) -> Job:
        if stage == "train" and self.spec.tracking is not None:  # a label: job_id leaves it out
            config = {**config, "tracking": {**plain(self.spec.tracking), "sweep": self.spec.name, "run_name": name}}
        return Job(id=job_id(config, self.ids), name=name, stage=stage, depends_on=deps, config=config,
                   resources=self._stage_resources(stage, config["axes"]))

    def _stage_resources(self, stage: str, axes: dict[str, Any]) -> Resources:
        """resources(), made once per stage and the values of the axes its overrides look at."""
        where = self._override_axes.get(stage)
        if where is None:
            where = self._override_axes[stage] = [a for o in self.spec.resources.overrides if o.stage == stage
                                                  for a in o.where]
        key = (stage, *((a in axes, repr(axes.get(a))) for a in where))
        if key not in self._resources:
            self._resources[key] = self.resources(stage, axes)
        return self._resources[key]

    def resources(self, stage: str, axes: dict[str, Any]) -> Resources:
        merged = dict(BUILTIN_RESOURCES[stage], estimate=None,
                      **{k: getattr(self.profile, k) for k in _SLURM_PLACEMENT})
        layers: list[Any] = [self.profile.defaults.get(stage), getattr(self.spec.resources, stage)]
        layers += [o for o in self.spec.resources.overrides if o.stage == stage and _matches(axes, o.where)]
        for layer in layers:
            if layer is None:
                continue
            for key in _RESOURCE_KEYS:
                value = getattr(layer, key, None)
                if value is not None:
                    merged[key] = value
        time_min = parse_time(merged["time"])
        estimate = parse_time(merged["estimate"]) if merged["estimate"] is not None else time_min
        return Resources(gpus=merged["gpus"], cpus=merged["cpus"], mem_gb=merged["mem_gb"], time_min=time_min,
                         nodes=merged["nodes"], partition=merged["partition"],
                         array_parallelism=merged["array_parallelism"], estimate_min=float(estimate),
                         account=merged["account"], qos=merged["qos"], constraint=merged["constraint"])

    def compile(self) -> list[Job]:
        points = self.points()
        self.problems.raise_if_any()
        trains, by_id = [], {}
        chains = _Chains(self.spec)
        for p in sorted(points, key=lambda p: chains.depth(p["method"])):  # an upstream run before its chain
            name = self.run_name(p)
            s = self.sections(p, name)
            if s is None or not self.check_preferences(p, s["dataset"]):
                continue
            name = self.run_name(p)  # the converted values
            config, deps = self.train_config(p, s), ()
            if chains.upstream_method(p["method"]) is not None:
                up = chains.find(p, name, self._once)
                if up is None:
                    continue
                if not chains.compatible(config, up, self._once):
                    continue
                config, deps = chains.chained(config, up), (up.id,)
                name = self.run_name({**p, "method": config["axes"]["method"]})
            job = self._job(name, "train", deps, config)
            chains.add(p, job)
            self._training[job.id] = s["training"]
            if job.id in by_id:
                self.problems.add("grid", f"runs '{by_id[job.id].name}' and '{job.name}' resolve to the same "
                                          f"config (duplicate run; do two names point to the same thing?)")
                continue
            by_id[job.id] = job
            trains.append(job)
        self.problems.raise_if_any()
        jobs = list(trains)
        for t in trains:
            jobs += self.eval_jobs(t, "adapter", self.checkpoints(None, self._training[t.id], t.name))
        for i, m in enumerate(self.spec.merges):
            jobs += self.merge_jobs(i, m, trains)
        if self.spec.evals.base_models:
            for model_name in dict.fromkeys(t.config["axes"]["model"] for t in trains):
                jobs += self.base_eval_jobs(model_name)
        for name, target in self.spec.targets.items():
            jobs += self.target_jobs(name, target)
        self._unique_names(jobs)
        self.problems.raise_if_any()
        return jobs

    def _unique_names(self, jobs: list[Job]) -> None:
        """Two different jobs never share a name (status, logs and cancel select by name): dotted values
        that differ only in characters a name cannot hold (zero-width characters, accents: 'été' and
        'ètè' both label as '_t_') are refused here, in one line, rather than renamed (no existing
        name moves)."""
        seen: dict[str, Job] = {}
        for job in jobs:
            other = seen.setdefault(job.name, job)
            if other is job or other.id == job.id:
                continue
            a, b = other.config.get("axes") or {}, job.config.get("axes") or {}
            axis = next((x for x in self.dotted if _vkey(a.get(x)) != _vkey(b.get(x))), None)
            if axis is None:
                self.problems.add("grid", f"jobs {other.id} and {job.id} share the name '{job.name}'")
                return
            at = self.origin.get((axis, _vkey(b[axis])), self.origin.get(axis, "grid"))
            self.problems.add(at, f"{axis} values {a.get(axis)!r} and {b.get(axis)!r} give two runs one name "
                                  f"'{job.name}': they differ only in characters a name cannot hold (it keeps "
                                  f"letters A-Z, digits and . _ + -); make them differ in those")
            return

    def manifest_axes(self, jobs: list[Job]) -> list[str]:
        """The axes of this plan: the named ones, then each dotted one some job carries."""
        used = {a for j in jobs for a in j.config["axes"]}
        return list(AXES) + [a for a in self.dotted if a in used]


class _Chains:
    """Chained stages (a method's `init_from`): which run each chained run starts from.

    The upstream of a run of method M (init_from: {method: U}) is the run of U with the same other
    axes; a dotted `method.*` axis is U's own unless both carry it (then the values must match).
    The chained run depends on it, names it in config["init"] (so its id follows the upstream's),
    and its method label shows the chain (`sft>dpo`)."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.runs: dict[tuple, list[tuple[dict[str, Any], Job]]] = {}

    def upstream_method(self, method: str) -> str | None:
        init = self.spec.methods[method].init_from
        return init.method if init is not None else None

    def depth(self, method: str) -> int:
        n, up = 0, self.upstream_method(method)  # a loop, not recursion: the spec check bounds the chain
        while up is not None:
            n, up = n + 1, self.upstream_method(up)
        return n

    @staticmethod
    def _key(method: str, p: dict[str, Any]) -> tuple:
        return (method, *((a, _hkey(p[a])) for a in p if a != "method" and not a.startswith("method.")))

    def add(self, p: dict[str, Any], job: Job) -> None:
        self.runs.setdefault(self._key(p["method"], p), []).append((p, job))

    def find(self, p: dict[str, Any], name: str, once: Any) -> Job | None:
        up = self.upstream_method(p["method"])
        found = [job for q, job in self.runs.get(self._key(up, p), [])
                 if all(_same(q[a], p[a]) for a in q if a.startswith("method.") and a in p)]
        at = join(join(join("methods", p["method"]), "init_from"), "method")
        if len(found) == 1:
            return found[0]
        if not found:
            once(("chain", p["method"]), at, f"run '{name}' starts from a '{up}' run with the same other axes, which the grid does "
                             f"not train (excluded or never listed): add it, or exclude the chained run too")
        else:
            once(("chain", p["method"]), at, f"run '{name}' matches {len(found)} '{up}' runs ({', '.join(j.name for j in found[:3])}): "
                             f"sweep the dotted method axes of both methods together, or of one only")
        return None

    def compatible(self, config: dict[str, Any], up: Job, once: Any) -> bool:
        """continue trains the upstream adapter itself: a dotted `method.lora.*` axis must not
        give the chained run another LoRA shape than its upstream's (the spec check covers the rest)."""
        method = config["axes"]["method"]
        if self.spec.methods[method].init_mode != "continue" or config["method"]["lora"] == up.config["method"]["lora"]:
            return True
        once(("chain-lora", method), join(join("methods", method), "lora"),
             f"run '{up.name}' has lora {up.config['method']['lora']}, its continued run "
             f"{config['method']['lora']}: init_mode continue trains the upstream adapter (sweep method.lora.* "
             f"of both methods together, or use init_mode: merge)")
        return False

    def chained(self, config: dict[str, Any], up: Job) -> dict[str, Any]:
        """The chained run's config: its upstream named by id (content hash), the chain in its label."""
        m = self.spec.methods[config["axes"]["method"]]
        axes = {**config["axes"], "method": f"{up.config['axes']['method']}>{config['axes']['method']}"}
        return {**config, "axes": axes, "init": {"job": up.id, "mode": m.init_mode}}

def _upstream(key: tuple) -> str:
    """'train' or 'merge>eval' for an array key: the stages of the arrays it follows."""
    chain = []
    up = key[2]
    while up is not None:
        chain.append(up[0])
        up = up[2]
    return ">".join(reversed(chain))


def _label(axis: str, value: Any) -> str:
    return f"s{value}" if axis == "seed" else str(value)


# Short names for dotted-axis labels in run names (`.../beta=0.1/lr=5e-06`)
_SHORT = {"learning_rate": "lr", "max_steps": "steps", "batch_size": "bs", "per_device_batch_size": "pdbs",
          "warmup_ratio": "warmup", "weight_decay": "wd", "max_length": "maxlen", "max_prompt_length": "promptlen"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-]")


def _dotted_labels(dotted: list[str]) -> dict[str, str]:
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


def _vkey(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


_SCALARS = (str, int, float, bool, type(None))


def _hkey(value: Any) -> Any:
    """A hashable key equal for values equal as JSON: a scalar with its type (1, 1.0 and True
    stay apart, as their JSON does), anything else its JSON text."""
    kind = type(value)
    if kind is float:
        return kind, repr(value)  # -0.0 and 0.0 differ in JSON
    return (kind, value) if kind in _SCALARS else json.dumps(value, default=str)


def _has_path(cfg: Any, rest: str) -> bool:
    for part in rest.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return False
        cfg = cfg[part]
    return True


def _close_path(cfg: Any, rest: str) -> str | None:
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


def _get_path(cfg: Any, rest: str) -> Any:
    for part in rest.split("."):
        cfg = cfg[part]
    return cfg


def _matches(axes: dict[str, Any], where: dict[str, Any]) -> bool:
    for axis, want in where.items():
        values = list(want) if isinstance(want, (list, tuple)) else [want]
        if axis == "preference":
            values = [_norm_pref(v) for v in values]
        if axis not in axes or not any(_same(axes[axis], v) or _same(_own(axis, axes[axis]), v) for v in values):
            return False
    return True


def _own(axis: str, value: Any) -> Any:
    """A chained run's method label `sft>dpo` is its method `dpo` wherever a method is named."""
    return value.rsplit(">", 1)[-1] if axis == "method" and isinstance(value, str) else value


def _same(a: Any, b: Any) -> bool:
    """Equal, or the same number however YAML typed it (PyYAML reads 5e-6 as a string, 5.0e-6 as
    a float; a dotted axis's value is converted to the field's type after `exclude` is applied)."""
    if a == b:
        return True
    try:
        return not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b)
    except (TypeError, ValueError):
        return False


def compile_spec(spec: Spec, profile: Profile) -> list[Job]:
    return _Compiler(spec, profile).compile()


def _select(spec: Spec) -> dict[str, Any] | None:
    s = spec.select
    return None if s is None else {"metric": s.metric, "goal": s.goal, "over": list(s.over), "by": list(s.by),
                                   "checkpoint": s.checkpoint}


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cycle collector off while compiling: the plan's ~10 objects per job are all alive
    until the end and hold no cycles, and re-scanning them as they grow cost 25% of a 100,000-job plan."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_plan(spec_path: str | Path, profile: str | None = None, output_dir: str | Path | None = None) -> Plan:
    """Load, validate and compile a spec. Raises SpecError / UserError with one line per problem."""
    spec = load_spec(spec_path)
    if output_dir is not None:  # --output-dir: the same refusals as the spec's output_dir
        bad_dir = output_dir_problem(str(output_dir), Path.cwd())
        if bad_dir:
            raise UserError(one_line(f"--output-dir: {bad_dir}"))
    elif spec.output_dir is None:  # runs/NAME under the current directory
        bad_dir = output_dir_problem(f"runs/{spec.name}", Path.cwd())
        if bad_dir:
            problems = spec.problems()
            problems.add("name", f"the default output directory {bad_dir}")
            problems.raise_if_any()
    prof = load_profile(profile or spec.profile)
    compiler = _Compiler(spec, prof)
    with _no_gc():
        jobs = compiler.compile()
    out = Path(output_dir or spec.output_dir or f"runs/{spec.name}").expanduser().resolve()
    plan = Plan(sweep=spec.name, spec_path=spec.path, spec_text=spec.text, output_dir=out, jobs=jobs, profile=prof,
                spec_lines=spec.lines, axes=compiler.manifest_axes(jobs), select=_select(spec),
                shared=compiler.ids.shared())
    problems = spec.problems()
    for at, message in local_path_issues(spec)[1]:
        problems.add(at, message)
    plan.not_ready = problems.items + missing_secrets(plan)
    return plan


def missing_secrets(plan: Plan) -> list[str]:
    """One line per judge a planned job calls whose api_key_env variable is not set here (jobs
    inherit this environment: sbatch exports it, the local executor runs in it)."""
    out: dict[tuple[str, str], None] = {}
    seen: set[int] = set()  # jobs share their benchmark dicts (compile builds each set once)
    for job in plan.jobs:
        benchmarks = job.config.get("benchmarks", {})
        if id(benchmarks) in seen:
            continue
        seen.add(id(benchmarks))
        for bench in benchmarks.values():
            judge = bench.get("judge") if isinstance(bench, dict) else None
            var = judge.get("api_key_env") if isinstance(judge, dict) else None
            if var and not os.environ.get(var):
                out[(judge["name"], var)] = None
    problems = Problems(str(plan.spec_path), plan.spec_lines)
    for name, var in out:
        problems.add(join(join(join("evals", "judges"), name), "api_key_env"),
                     f"${var} is not set (judge '{name}' calls its API with it)")
    return problems.items


def require_ready(plan: Plan) -> None:
    """At submit: refuse while a local path is missing or a judge's API key variable is unset
    (`plan` prints the same lines as warnings)."""
    if plan.not_ready:
        raise UserError("\n".join(plan.not_ready))


__all__ = ["Job", "Plan", "Resources", "SpecError", "compile_spec", "job_id", "load_plan"]
