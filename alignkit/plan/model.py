"""A compiled plan: its jobs (id, name, stage, dependencies, resolved config, resources), the
arrays they are submitted in, and its summary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.contract.serial import to_json
from alignkit.plan.judge_cost import judge_costs
from alignkit.submit.profiles import Profile
from alignkit.plan.estimates import estimate as estimate_costs
from alignkit.plan.reference import summarize as reference_summary
from alignkit.spec.model import AXES
from alignkit.plan.resources import Resources


@dataclass(frozen=True, slots=True)  # slots: 100,000 of them are made per large plan
class Job:
    id: str
    name: str
    stage: str
    depends_on: tuple[str, ...]
    config: Any  # the stage's typed config (alignkit/contract: TrainConfig, EvalConfig, ...)
    resources: Resources

    def to_json(self) -> dict[str, Any]:
        """The job as the manifest lists it (its config as config.json holds it)."""
        return {"id": self.id, "name": self.name, "stage": self.stage, "depends_on": list(self.depends_on),
                "config": to_json(self.config), "resources": self.resources.to_json()}


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
    # sub-configs many jobs hold (one object each): `plan --json` encodes each once (alignkit/plan/planjson.py)
    shared: list[Any] = dataclasses.field(default_factory=list, repr=False, compare=False)
    # eval/judge jobs of `runs: selected` benchmarks still waiting for the selection (plan/selected.py):
    # not in `jobs` (nothing queues them) until a submit finds the selection collect wrote
    awaiting: list[Job] = dataclasses.field(default_factory=list)

    def by_id(self) -> dict[str, Job]:
        return {j.id: j for j in self.jobs}

    def array_keys(self) -> dict[str, tuple]:
        """Job id -> the array it is submitted in: one per stage, resource class and upstream
        array (that of its single dependency), so each eval array lines up element-wise with the
        train or merge array it follows (aftercorr), and each judge array with its eval array."""
        by_id: dict[str, Job] | None = None  # made only if a job comes before its upstream
        keys: dict[str, tuple] = {}
        classes: dict[int, tuple] = {}  # id(Resources) -> its key(): jobs share Resources objects

        def key(job: Job) -> tuple:
            nonlocal by_id
            # a job with several inputs (a merge) waits on each through afterok: no upstream array
            up = None
            if len(job.depends_on) == 1:
                dep = job.depends_on[0]
                up = keys.get(dep)
                if up is None:  # not keyed yet (compile lists upstream jobs first; a hand-made plan may not)
                    by_id = by_id if by_id is not None else self.by_id()
                    if dep in by_id:
                        up = key(by_id[dep])
            r = classes.get(id(job.resources))
            if r is None:
                r = classes[id(job.resources)] = job.resources.key()
            k = keys[job.id] = (job.stage, r, up)
            return k

        for job in self.jobs:
            if job.id not in keys:
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
                arr = arrays[keys[job.id]] = {"stage": job.stage, "after": upstream_stages(keys[job.id]), "jobs": 0, **{
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
            "mixture_runs": sum(1 for j in train if len(j.config.preference) > 1),
            "arrays": list(arrays.values()),
            "gpu_hours": {k: round(v, 2) for k, v in gpu_hours.items()},
            "gpu_hours_total": round(sum(gpu_hours.values()), 2),
            "judges": judge_costs(self.jobs),
            **reference_summary(self.jobs),  # shared DPO reference passes (alignkit/plan/reference.py)
            "estimates": costs,
            **awaiting_summary(self),
        }

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "sweep": self.sweep, "spec": str(self.spec_path), "output_dir": str(self.output_dir),
                "profile": self.profile.name, "axes": self.axes, "select": self.select,
                "jobs": [j.to_json() for j in self.jobs], "summary": self.summary()}


def upstream_stages(key: tuple) -> str:
    """'train' or 'merge>eval' for an array key: the stages of the arrays it follows."""
    chain = []
    up = key[2]
    while up is not None:
        chain.append(up[0])
        up = up[2]
    return ">".join(reversed(chain))


def awaiting_summary(plan: Plan) -> dict[str, Any]:
    """`awaiting_selection` in the summary (only when some benchmark has `runs: selected`)."""
    if not plan.awaiting:
        return {}
    from alignkit.plan.selected import summary
    return {"awaiting_selection": summary(plan)}
