"""Which training steps leave an adapter: the one rule the spec checks, the plan and the jobs use.

A train job keeps an adapter at every multiple of `save_steps` and at its last step (`max_steps`),
which an eval names "final" (the job's adapter/, alignkit/contract/paths.py). So a checkpoint a
study asks for is "final" or a step that is saved; max_steps itself is "final" wherever it is named.
With num_train_epochs a fraction of training stays a fraction until the job has counted max_steps,
then it also saves the step epoch_fraction_step names (docs/training.md "Epochs").
"""

from __future__ import annotations

import math
from typing import Any

FINAL = "final"


def planned_max_steps(training: Any) -> float:
    """A training section's last step as plan knows it: max_steps, or unbounded where
    num_train_epochs leaves the count to the job (then only "final" is the last step, and a step
    is checked for being saved, not for being reached)."""
    return math.inf if getattr(training, "num_train_epochs", None) is not None else training.max_steps


def fraction_step(checkpoint: Any, max_steps: float) -> Any:
    """A checkpoint given as a fraction of training (a float in (0, 1)) as the step it names:
    fraction x max_steps when that is a whole step, else None; steps and "final" as given. Plan turns
    fractions into steps, so configs and ids are those of the same steps written out."""
    if not isinstance(checkpoint, float):
        return checkpoint
    if not 0 < checkpoint < 1 or max_steps == math.inf:
        return None
    step = checkpoint * max_steps
    return round(step) if abs(step - round(step)) < 1e-9 * max(1.0, step) and round(step) > 0 else None


def epoch_fraction_step(fraction: float, max_steps: int) -> int:
    """A fraction of training as a step once the train job has counted max_steps (num_train_epochs):
    the nearest step, halves rounded up, and at least 1. The job saves an adapter there and records
    the mapping (train_metrics.json "fraction_steps"); the eval job reads it back."""
    return min(max_steps, max(1, math.floor(fraction * max_steps + 0.5)))


def is_fraction(checkpoint: Any) -> bool:
    """A checkpoint given as a fraction of training, as configs hold it (0.5) or eval.json keys it ("0.5")."""
    return isinstance(checkpoint, float) or (isinstance(checkpoint, str) and "." in checkpoint)


def fraction_problem(checkpoint: float, training: Any) -> str | None:
    """Why a fraction of training names no step; None when plan (max_steps) or the job
    (num_train_epochs: epoch_fraction_step) can name one."""
    if not 0 < checkpoint < 1:
        return f"a fraction of training is in (0, 1), got {checkpoint!r} (the last step is 'final')"
    if getattr(training, "num_train_epochs", None) is not None:
        return None
    if fraction_step(checkpoint, training.max_steps) is None:
        return f"{checkpoint!r} of training.max_steps {training.max_steps} is not a whole step"
    return None


def is_saved(step: int, max_steps: int, save_steps: int) -> bool:
    """Whether training writes an adapter at `step` (the job's checkpoint callback asks this)."""
    return step >= max_steps or step % save_steps == 0


def unsaved_reason(step: int, max_steps: int, save_steps: int) -> str | None:
    """Why no adapter is saved at `step`, in the spec's words; None when one is."""
    if step > max_steps:
        return f"step {step} is beyond training.max_steps {max_steps}"
    if not is_saved(step, max_steps, save_steps):
        return f"step {step} is not a multiple of training.save_steps {save_steps}, so no adapter is saved there"
    return None


def is_final(checkpoint: Any, max_steps: int) -> bool:
    """'final', or the last step, which is the same adapter."""
    return checkpoint == FINAL or checkpoint == max_steps


def final_step(checkpoint: Any, max_steps: int) -> Any:
    """A checkpoint as evals name it: the last step is 'final'."""
    return FINAL if checkpoint == max_steps else checkpoint
