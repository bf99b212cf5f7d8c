"""Build small Plans of fake-stage jobs (tests/slurm/fake_stage.py) for the launcher's tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from alignkit.plan.ids import job_id
from alignkit.plan.model import Job, Plan
from alignkit.plan.resources import Resources
from alignkit.submit.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]


def resources(stage: str = "train", time_min: int = 30, throttle: int = 8, gpus: int = 0,
              partition: str | None = None) -> Resources:
    return Resources(gpus=gpus, cpus=1, mem_gb=1, time_min=time_min, nodes=1, partition=partition,
                     array_parallelism=throttle, estimate_min=1.0)


def job(name: str, stage: str = "train", deps: tuple[str, ...] = (), res: Resources | None = None,
        **fake) -> Job:
    fake.setdefault("tag", name)  # distinct ids per test job
    config = {"stage": stage, "stage_module": "tests.slurm.fake_stage", "fake": dict(fake, needs=list(deps))}
    return Job(id=job_id(config), name=name, stage=stage, depends_on=tuple(deps), config=config,
               resources=res or resources(stage))


def plan(out: Path, jobs: list[Job], profile: str = "dev", sweep: str = "t", signal_delay_s: int | None = None,
         max_parallel_local: int = 2) -> Plan:
    prof = load_profile(profile)
    prof = dataclasses.replace(
        prof, setup=(*prof.setup, f"export PYTHONPATH=$PYTHONPATH:{REPO}"),  # the fake stage lives in tests/
        signal_delay_s=prof.signal_delay_s if signal_delay_s is None else signal_delay_s,
        max_parallel_local=max_parallel_local)
    return Plan(sweep=sweep, spec_path=out / "spec.yaml", spec_text="# built by tests/slurm/fakeplan.py\n",
                output_dir=out, jobs=jobs, profile=prof)
