"""Checkpoints of a training job: what the Trainer saves to resume, and what the study keeps.

Two kinds live under `<job>/checkpoints/`:
  step-<N>/          the adapter at step N (adapter_config.json + adapter_model.safetensors), for
                     every N that is a multiple of `save_steps`, the last step, and (num_train_epochs) the
                     steps evals' fractions of training came to. Kept forever:
                     the quantity study evaluates them. Each appears whole (built under a
                     temporary name and renamed).
  .resume/checkpoint-<N>/   the HF Trainer's own checkpoint (adapter, optimizer, scheduler, RNG,
                     trainer state, DeepSpeed shards). A `COMPLETE` marker is written last, after
                     every rank has saved; a requeued job resumes from the newest complete one and
                     deletes partial ones. The whole `.resume/` goes when the run completes, so
                     optimizer states do not pile up.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from alignkit.contract import paths
from alignkit.contract.checkpoints import is_saved
from alignkit.contract.fsio import atomic_dir, atomic_write_json, read_json
from jobs.train import distributed

MARKER = "COMPLETE"
RUN_STATE = "alignkit_run.json"  # wall time and attempts so far, carried across requeues
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def resume_dir(job_dir: Path) -> Path:
    return Path(job_dir) / paths.CHECKPOINTS / ".resume"


def step_dir(job_dir: Path, step: int) -> Path:
    return paths.step_dir(job_dir, step)


def _trainer_checkpoints(job_dir: Path) -> list[tuple[int, Path]]:
    root = resume_dir(job_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _CKPT.match(p.name)) and p.is_dir()]
    return sorted(found)


def latest_complete(job_dir: Path) -> Path | None:
    """The newest Trainer checkpoint whose marker exists (a partial one is ignored)."""
    done = [p for _, p in _trainer_checkpoints(job_dir) if (p / MARKER).exists()]
    return done[-1] if done else None


def drop_partial(job_dir: Path) -> None:
    """Remove Trainer checkpoints without a marker (a save cut short); main rank only."""
    for _, p in _trainer_checkpoints(job_dir):
        if not (p / MARKER).exists():
            shutil.rmtree(p, ignore_errors=True)


def run_state(checkpoint: Path | None) -> dict:
    if checkpoint is None or not (checkpoint / RUN_STATE).exists():
        return {"wall_s": 0.0, "attempts": 0}
    return read_json(checkpoint / RUN_STATE)


def finish(job_dir: Path) -> None:
    """The run is complete: drop the resumable states (optimizer, scheduler, RNG), keep adapters."""
    shutil.rmtree(resume_dir(job_dir), ignore_errors=True)


def saved_steps(job_dir: Path) -> list[int]:
    root = Path(job_dir) / paths.CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(n for p in root.iterdir() if (n := paths.step_of(p.name)) is not None)


def export_adapter(src: Path, dst: Path) -> None:
    """Copy the adapter files of `src` into `dst`, atomically."""
    missing = [f for f in ADAPTER_FILES if not (src / f).exists()]
    if missing:
        raise FileNotFoundError(f"{src}: no {', '.join(missing)} (was the model wrapped in PEFT?)")
    with atomic_dir(dst) as tmp:
        for f in ADAPTER_FILES:
            shutil.copyfile(src / f, tmp / f)


class CheckpointCallback(TrainerCallback):
    """After each Trainer save: wait for all ranks, export the adapter to `step-N/` when N is a
    study checkpoint, record the run state, then write the marker last."""

    def __init__(self, job_dir: Path, save_steps: int, is_main: bool, prior: dict,
                 also_at: frozenset[int] = frozenset()):
        self.job_dir = Path(job_dir)
        self.save_steps = save_steps
        self.also_at = also_at  # the steps fractions of training came to (num_train_epochs)
        self.is_main = is_main
        self.started = time.time()
        self.prior_wall = float(prior.get("wall_s", 0.0))
        self.attempts = int(prior.get("attempts", 0)) + 1

    def wall_s(self) -> float:
        return self.prior_wall + (time.time() - self.started)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps or state.global_step in self.also_at:
            control.should_save = True  # the final adapter comes from this last checkpoint
        return control

    def on_save(self, args, state, control, **kwargs):
        step = state.global_step
        ckpt = resume_dir(self.job_dir) / f"checkpoint-{step}"
        distributed.barrier()  # every rank's shards are on disk before the marker says so
        if self.is_main:
            if is_saved(step, state.max_steps, self.save_steps) or step in self.also_at:
                export_adapter(ckpt, step_dir(self.job_dir, step))
            atomic_write_json(ckpt / RUN_STATE, {"wall_s": self.wall_s(), "attempts": self.attempts,
                                                 "step": step})
            atomic_write_json(ckpt / MARKER, {"step": step, "time": time.time()})
        distributed.barrier()
        return control

