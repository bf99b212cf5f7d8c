"""Spec -> plan: expand the grid into train, eval, judge and merge jobs with dependencies.

Each job carries its stage's typed config (alignkit/contract: TrainConfig, EvalConfig, JudgeConfig,
MergeConfig), fully resolved, and a content-hash id of its config.json (alignkit/plan/ids.py). The
compiler is one object (its state: the shared sub-configs, the problems told once) assembled from
the concerns in grid.py, runs.py, stages.py and resources.py; `load_plan` is the entry point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
from pathlib import Path
from typing import Any, Iterator

from alignkit.contract.errors import SpecError, UserError
from alignkit.submit.profiles import Profile, load_profile
from alignkit.contract.schema import Problems, join, one_line
from alignkit.contract.train import TrackingConfig
from alignkit.contract.sections import TrainingSpec
from alignkit.spec.axes import is_dotted, swept_axes
from alignkit.spec.load import load_spec
from alignkit.spec.model import AXES, Spec
from alignkit.spec.paths import local_path_issues, output_dir_problem
from alignkit.plan.ids import id_encoder, job_id
from alignkit.plan.batch_check import check_batches
from alignkit.plan.resources import Resources, StageResources
from alignkit.plan.model import Job, Plan
from alignkit.plan.grid import GridExpansion, dotted_labels, value_key
from alignkit.plan.runs import RunSections, spec_fields
from alignkit.plan.stages import StageJobs
from alignkit.plan.chains import Chains


_MISSING = object()  # not cached yet (a cached value may be None)


class _Compiler(GridExpansion, RunSections, StageJobs, StageResources):
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
        self.labels = dotted_labels(self.dotted)
        self.origin: dict[Any, str] = {}  # dotted axis (and (axis, value)) -> the YAML path first giving it
        self._told: set[tuple] = set()  # per-run problems already reported once
        self._training: dict[str, TrainingSpec] = {}  # train job id -> its training section
        self.awaiting: list[Job] = []  # eval/judge jobs of `runs: selected` benchmarks (plan/selected.py)

    def _cached(self, key: tuple, make: Any) -> Any:
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:
            value = self._cache[key] = make()
            self.ids.share(value)
        return value

    def _once(self, key: tuple, path: str, message: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self.problems.add(path, message)

    # ---- jobs and resources ---------------------------------------------------------------------
    def _job(self, name: str, stage: str, deps: tuple[str, ...], config: Any) -> Job:
        if stage == "train" and self.spec.tracking is not None:  # a label: job_id leaves it out
            config = dataclasses.replace(config, tracking=TrackingConfig(
                **spec_fields(self.spec.tracking), sweep=self.spec.name, run_name=name))
        return Job(id=job_id(config, self.ids), name=name, stage=stage, depends_on=deps, config=config,
                   resources=self._stage_resources(stage, config.axes))

    def compile(self) -> list[Job]:
        points = self.points()
        self.problems.raise_if_any()
        trains, by_id = [], {}
        chains = Chains(self.spec)
        for p in sorted(points, key=lambda p: chains.depth(p["method"])):  # an upstream run before its chain
            name = self.run_name(p)
            s = self.sections(p, name)
            if s is None or not self.check_preferences(p, s["dataset"]):
                continue
            if self.dotted:
                name = self.run_name(p)  # the converted values
            config, deps = self.train_config(p, s), ()
            if chains.upstream_method(p["method"]) is not None:
                up = chains.find(p, name, self._once)
                if up is None:
                    continue
                if not chains.compatible(config, up, self._once):
                    continue
                config, deps = chains.chained(config, up), (up.id,)
                name = self.run_name({**p, "method": config.axes["method"]})
            elif self.spec.methods[p["method"]].init_from is not None:  # init_from.adapter: no upstream job
                config = chains.adapter_start(config)
            job = self._job(name, "train", deps, config)
            chains.add(p, job)
            self._training[job.id] = s["training"]
            if job.id in by_id:
                self.problems.add("grid", f"runs '{by_id[job.id].name}' and '{job.name}' resolve to the same "
                                          f"config (duplicate run; do two names point to the same thing?)")
                continue
            by_id[job.id] = job
            trains.append(job)
        check_batches(trains, self.problems)  # the global batch over nodes x GPUs x per-device batch
        self.problems.raise_if_any()
        jobs = list(trains)
        at: dict[int, list[Any]] = {}  # id(training section) -> its checkpoints: runs share sections
        for t in trains:
            training = self._training[t.id]
            if id(training) not in at:  # (a problem with them is told once, naming the first run)
                at[id(training)] = self.checkpoints(None, training, t.name)
            jobs += self.eval_jobs(t, "adapter", at[id(training)])
            self.awaiting += self.selected_eval_jobs(t, at[id(training)])
        for i, m in enumerate(self.spec.merges):
            jobs += self.merge_jobs(i, m, trains)
        if self.spec.evals.base_models:
            for model_name in dict.fromkeys(t.config.axes["model"] for t in trains):
                jobs += self.base_eval_jobs(model_name)
        for name, target in self.spec.targets.items():
            jobs += self.target_jobs(name, target)
        self._unique_names(jobs + self.awaiting)
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
            a, b = other.config.axes, job.config.axes
            axis = next((x for x in self.dotted if value_key(a.get(x)) != value_key(b.get(x))), None)
            if axis is None:
                self.problems.add("grid", f"jobs {other.id} and {job.id} share the name '{job.name}'")
                return
            at = self.origin.get((axis, value_key(b[axis])), self.origin.get(axis, "grid"))
            self.problems.add(at, f"{axis} values {a.get(axis)!r} and {b.get(axis)!r} give two runs one name "
                                  f"'{job.name}': they differ only in characters a name cannot hold (it keeps "
                                  f"letters A-Z, digits and . _ + -); make them differ in those")
            return

    def manifest_axes(self, jobs: list[Job]) -> list[str]:
        """The axes of this plan: the named ones, then each dotted one some job carries."""
        used = {a for j in jobs for a in j.config.axes}
        return list(AXES) + [a for a in self.dotted if a in used]


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
                shared=compiler.ids.shared(), awaiting=compiler.awaiting)
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
    for job in [*plan.jobs, *plan.awaiting]:  # a selected benchmark's judge: told before the first submit
        if job.stage != "judge" or id(job.config.benchmarks) in seen:
            continue
        seen.add(id(job.config.benchmarks))
        for bench in job.config.benchmarks.values():
            var = bench.judge.api_key_env if bench.judge is not None else None
            if var and not os.environ.get(var):
                out[(bench.judge.name, var)] = None
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
