"""`plan --json` written as it is encoded: the same text as `json.dumps(plan.to_json(),
allow_nan=False)`, without building a second copy of every job as dicts first.

A 100,000-job plan is ~130 MB of JSON; most of it is the same model, dataset, method and
benchmark sub-configs repeated per job, which alignkit/plan/canonical.py encodes once each
(`Plan.shared` lists them). `summary_only` leaves the "jobs" list out (`plan --json --summary`)."""

from __future__ import annotations

import json
from typing import IO

from alignkit.plan.canonical import Encoder, encode_string
from alignkit.plan.model import Plan

_CHUNK = 2000  # jobs per write


def write_plan_json(plan: Plan, out: IO[str], summary_only: bool = False) -> None:
    head = {"format": 1, "sweep": plan.sweep, "spec": str(plan.spec_path), "output_dir": str(plan.output_dir),
            "profile": plan.profile.name, "axes": plan.axes, "select": plan.select}
    text = json.dumps(head, allow_nan=False)[:-1]  # open: the jobs and the summary follow
    summary = json.dumps(plan.summary(), allow_nan=False)
    if summary_only:
        out.write(f"{text}, \"summary\": {summary}}}\n")
        return
    out.write(text + ", \"jobs\": [")
    enc = Encoder(canonical=False)
    for obj in plan.shared:
        enc.share(obj)
    resources: dict[int, str] = {}  # id(Resources) -> its text: jobs share Resources objects
    chunk: list[str] = []
    for i, job in enumerate(plan.jobs):
        r = resources.get(id(job.resources))
        if r is None:
            r = resources[id(job.resources)] = json.dumps(job.resources.to_json(), allow_nan=False)
        chunk.append(("" if i == 0 else ", ") + "{\"id\": " + encode_string(job.id) + ", \"name\": "
                     + encode_string(job.name) + ", \"stage\": " + encode_string(job.stage) + ", \"depends_on\": "
                     + enc.encode(list(job.depends_on)) + ", \"config\": " + enc.encode(job.config)
                     + ", \"resources\": " + r + "}")
        if len(chunk) == _CHUNK:
            out.write("".join(chunk))
            chunk.clear()
    out.write("".join(chunk) + f"], \"summary\": {summary}}}\n")
