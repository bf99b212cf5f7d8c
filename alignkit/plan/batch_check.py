"""A train job's global batch must split over the processes its resources start: SLURM runs one
task per GPU of a node (alignkit/backends/slurm.py `ntasks_per_node`; one task without GPUs), so the
world is nodes x max(gpus, 1), and the job computes the gradient accumulation as batch_size /
(per_device_batch_size x world) (jobs/train/stage.py `resolve`), failing when it does not divide.
Plan refuses it first, in one line per method and resources."""

from __future__ import annotations

from typing import Any

from alignkit.contract.schema import Problems, join


def world_size(resources: Any) -> int:
    return resources.nodes * max(resources.gpus, 1)


def check_batches(trains: list[Any], problems: Problems) -> None:
    told: set[tuple] = set()
    for job in trains:
        m, r = job.config.method, job.resources
        world = world_size(r)
        step = m.per_device_batch_size * world
        key = (m.name, m.batch_size, step)
        if m.batch_size % step == 0 or key in told:
            continue
        told.add(key)
        method = str(job.config.axes["method"]).rsplit(">", 1)[-1]
        problems.add(join(join("methods", method), "batch_size"),
                     f"global batch {m.batch_size} does not divide over nodes x GPUs x per_device_batch_size = "
                     f"{r.nodes} x {max(r.gpus, 1)} x {m.per_device_batch_size} = {step} (run '{job.name}', "
                     f"resources.train); give a batch_size that is a multiple of {step}, or other resources")
