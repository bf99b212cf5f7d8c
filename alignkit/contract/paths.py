"""The names of what a sweep directory and a job directory hold: one module, used by the jobs,
status, launch and collect (docs/contract.md "Job directory").

    <sweep>/jobs/<id>/  config.json   the resolved, typed config (alignkit.contract.load)
                        DONE          written last, on success
                        error.json    a failure's one-line reason
                        progress.json training progress, for `alignkit status`
                        logs/         stdout/stderr per attempt
                        train: adapter/, checkpoints/step-N/, train_metrics.json, init_model/ (merge-mode chain)
                        merge: model/, merge.json
                        eval:  eval.json
                        judge: judge.json
    <sweep>/results/<key>.json   evaluation results kept per (target, checkpoint, benchmark)
    <sweep>/reference/<key>/     DPO reference log-probs shared by the runs of a study (jobs/train/reference.py)
"""

from __future__ import annotations

import re
from pathlib import Path

JOBS = "jobs"
RESULTS = "results"
REFERENCE = "reference"
CODE = "code"

CONFIG = "config.json"
DONE = "DONE"
ERROR = "error.json"
PROGRESS = "progress.json"
LOGS = "logs"
TRAIN_METRICS = "train_metrics.json"
ADAPTER = "adapter"
CHECKPOINTS = "checkpoints"
MERGE = "merge.json"
MODEL = "model"
INIT_MODEL = "init_model"  # a chained train run in merge mode: the merged upstream model it trains on
EVAL = "eval.json"
JUDGE = "judge.json"

STEP_PREFIX = "step-"
_STEP = re.compile(r"^step-(\d+)$")


def job_dir(sweep: str | Path, job_id: str) -> Path:
    return Path(sweep) / JOBS / job_id


def step_dir(job: str | Path, step: int) -> Path:
    """A train job's adapter at step N: <job>/checkpoints/step-N/."""
    return Path(job) / CHECKPOINTS / f"{STEP_PREFIX}{int(step)}"


def step_of(name: str) -> int | None:
    """N for a folder named step-N, else None."""
    m = _STEP.match(name)
    return int(m.group(1)) if m else None


def result_path(sweep: str | Path, key: str) -> Path:
    return Path(sweep) / RESULTS / f"{key}.json"
