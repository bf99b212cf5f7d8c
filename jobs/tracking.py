"""Experiment trackers for the training job: the spec's `tracking` section -> TRL's `report_to`.

Each backend is one registry entry: the `report_to` name transformers knows, and a setup that
points transformers' own integration (transformers/integrations/integration_utils.py:
TensorBoardCallback, WandbCallback, MLflowCallback) at a place inside the sweep through the
environment variables it documents, and returns the callbacks that add what it does not log: the
run's name, its axes and the resolved config as tags. Trackers never change what a job computes
(the compiler leaves `tracking` out of job ids) and never reach the network from a compute node:
W&B runs offline (`alignkit sync` uploads them from the login node).
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from alignkit.contract.sections import tracking_store_path
from jobs.errors import JobFailure

TB_DIR = "tensorboard"  # <job>/tensorboard/: event files
WANDB_DIR = "wandb"  # <job>/wandb/offline-run-*/: W&B's offline run folders (wandb adds the "wandb" level)
MLRUNS = "mlruns"  # <sweep>/mlruns/: the default MLflow file store, one per sweep


@dataclass(frozen=True)
class Run:
    """What a tracker is told about the run (all labels: none of it reaches the job id)."""

    job_dir: Path
    name: str  # the job's name, e.g. tiny-llama/beavertails/harmless/sft/lora/s0
    sweep: str
    project: str
    tags: tuple[str, ...]  # axis:value for each axis, then the spec's own tags
    config: dict  # the resolved config, without the tracking section
    settings: dict  # the spec's tracking section as compiled

    @property
    def sweep_dir(self) -> Path:
        return self.job_dir.parent.parent  # the contract's layout: <sweep>/jobs/<id>


@dataclass
class Tracking:
    """What train.py passes on: TrainingArguments overrides and extra trainer callbacks."""

    args: dict = field(default_factory=lambda: {"report_to": "none"})
    callbacks: list = field(default_factory=list)


def setup(job_dir: Path, config: Any, *, is_main: bool) -> Tracking:
    """Configure the spec's tracker for this process; no section, no tracker. `config` is the
    typed TrainConfig; the tracker records it as config.json's dict."""
    from alignkit.contract import expect, to_dict
    from alignkit.contract.train import TrainConfig

    config = to_dict(expect(config, TrainConfig, "jobs.tracking.setup"))
    settings = config.get("tracking")
    if not settings:
        return Tracking()
    backend = REGISTRY[settings["backend"]]
    if importlib.util.find_spec(backend.module) is None:
        raise JobFailure(f"tracking.backend: {settings['backend']} needs the {backend.module} package on this node "
                         f"(pip install -c requirements/constraints.txt -e '.[track]')")
    run = _run(Path(job_dir), config, settings)
    callbacks = backend.setup(run) if is_main else []  # transformers reports from rank 0 only
    return Tracking(args={"report_to": [backend.report_to], "run_name": run.name}, callbacks=callbacks)


def _run(job_dir: Path, record: dict, settings: dict) -> Run:
    """`record`: the typed config as config.json's dict, what the tracker stores."""
    axes = record.get("axes") or {}
    tags = tuple(f"{axis}:{value}"[:64] for axis, value in axes.items()) + tuple(settings.get("tags") or ())
    sweep = settings.get("sweep") or job_dir.parent.parent.name
    return Run(job_dir=job_dir, name=settings.get("run_name") or job_dir.name, sweep=sweep,
               project=settings.get("project") or sweep, tags=tags,
               config={k: v for k, v in record.items() if k != "tracking"}, settings=settings)


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """{"method.lora.r": "16", ...}: a nested config record as flat string tags (lists as JSON)."""
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: json.dumps(tree) if isinstance(tree, (list, tuple)) else str(tree)}


# ---- TensorBoard: event files in <job>/tensorboard ------------------------------------------

class _TensorBoardLabels(TrainerCallback):
    """The run's name, tags and config as text summaries beside transformers' scalars."""

    def __init__(self, run: Run, log_dir: Path):
        self.run, self.log_dir = run, log_dir

    def on_train_begin(self, args, state, control, **kwargs):
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(self.log_dir), filename_suffix=".alignkit") as writer:
            writer.add_text("alignkit/run_name", self.run.name)
            writer.add_text("alignkit/tags", ", ".join(self.run.tags))
            writer.add_text("alignkit/config", "```\n" + json.dumps(self.run.config, indent=1) + "\n```")


def _tensorboard(run: Run) -> list:
    log_dir = run.job_dir / TB_DIR
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(log_dir)  # read by TensorBoardCallback.__init__
    return [_TensorBoardLabels(run, log_dir)]


# ---- Weights & Biases: offline runs in <job>/wandb ----------------------------------------------

class _WandbFinish(TrainerCallback):
    """WandbCallback leaves the run open at the end of training; close it so the offline folder is
    complete when the job ends (not at interpreter exit)."""

    def on_train_end(self, args, state, control, **kwargs):
        import wandb

        wandb.finish()


def _wandb(run: Run) -> list:
    import wandb

    os.environ["WANDB_MODE"] = "offline"  # compute nodes do not reach wandb.ai; `alignkit sync` does
    os.environ["WANDB_DIR"] = str(run.job_dir)
    # WandbCallback reuses a run that is already open (`if self._wandb.run is None: init`), so
    # opening it here is how the tags and our config reach it; the callback adds TrainingArguments.
    wandb.init(project=run.project, entity=run.settings.get("entity"), name=run.name, group=run.sweep,
               job_type="train", tags=list(run.tags), config=run.config, dir=str(run.job_dir), mode="offline",
               settings=wandb.Settings(console="off", silent=True))
    return [_WandbFinish()]


# ---- MLflow: a file store in <sweep>/mlruns, or the spec's tracking URI ------------------------

def _mlflow(run: Run) -> list:
    uri = run.settings.get("tracking_uri")
    named = tracking_store_path(uri) if uri and uri.startswith("file:") else None
    if not uri or named:  # the default store, or a file store the spec names (docs/training.md)
        store = Path(named) if named else run.sweep_dir / MLRUNS
        uri = uri or store.as_uri()
        # MLflow 3.7+ refuses file stores unless told; one directory per sweep on the shared
        # filesystem is what a cluster has (no database server, no sqlite locking over NFS).
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        _create_experiment(store, uri, run.project)
    tags = {"alignkit.sweep": run.sweep, "alignkit.job_id": run.job_dir.name, "alignkit.run_name": run.name,
            **{f"axis.{k}": str(v) for k, v in (run.config.get("axes") or {}).items()},
            **{f"tag.{t}": "true" for t in run.settings.get("tags") or ()},
            **{f"config.{k}": v[:5000] for k, v in flatten(run.config).items() if not k.startswith("axes.")}}
    # read by MLflowCallback.setup (start_run(run_name=args.run_name), set_tags(json.loads(MLFLOW_TAGS)))
    os.environ.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": run.project,
                       "MLFLOW_TAGS": json.dumps(tags)})
    return []


def _create_experiment(store: Path, uri: str, name: str) -> None:
    """Create the sweep's experiment once: the file store checks names without a lock, so jobs of
    an array starting together would otherwise create several experiments of one name."""
    import mlflow

    store.mkdir(parents=True, exist_ok=True)
    with open(store / ".alignkit.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = mlflow.MlflowClient(tracking_uri=uri)
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name)


@dataclass(frozen=True)
class Backend:
    report_to: str  # the integration's name in transformers' report_to
    module: str  # the package it needs (extra `track`)
    setup: Callable[[Run], list]


REGISTRY: dict[str, Backend] = {
    "tensorboard": Backend("tensorboard", "tensorboard", _tensorboard),
    "wandb": Backend("wandb", "wandb", _wandb),
    "mlflow": Backend("mlflow", "mlflow", _mlflow),
}
