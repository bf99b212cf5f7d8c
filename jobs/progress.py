"""Progress file, stop requests and NaN checks, as one TrainerCallback.

`progress.json` ({"step", "max_steps", "loss", "updated_at"}) is rewritten atomically every
`every` optimizer steps (and at the start, at each checkpoint and at the end) for `alignkit status`.

The runner sets `stop` (a threading.Event) when SLURM announces preemption or the time limit. At
each step end we read it — all-reduced, so every rank stops at the same step — and ask the
Trainer to save a checkpoint at this step and leave the loop; the job then raises `Preempted`.
The event is read exactly once per optimizer step (tests rely on that to stop at step k).
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from alignkit.contract.fsio import atomic_write_json
from alignkit.contract import paths as jobfiles
from jobs.train import distributed
from jobs.errors import JobFailure


class ProgressCallback(TrainerCallback):
    def __init__(self, job_dir: Path, stop: threading.Event, every: int, is_main: bool):
        self.path = Path(job_dir) / jobfiles.PROGRESS
        self.stop = stop
        self.every = max(1, int(every))
        self.is_main = is_main
        self.last_loss: float | None = None
        self.stopped_at: int | None = None  # the step at which a stop request was honoured
        self.step_at_start = 0  # where this attempt began (a resumed run starts past 0)
        self.tokens_at_start = 0

    def _write(self, state) -> None:
        if self.is_main:
            atomic_write_json(self.path, {"step": state.global_step, "max_steps": state.max_steps,
                                          "loss": self.last_loss, "updated_at": time.time()})

    def on_train_begin(self, args, state, control, **kwargs):
        self.step_at_start = state.global_step
        self.tokens_at_start = state.num_input_tokens_seen
        self._write(state)

    def on_step_end(self, args, state, control, **kwargs):
        requested = distributed.any_rank(self.stop.is_set())
        if requested and state.global_step < state.max_steps:
            # Save at this very step, then leave the loop; run() turns this into Preempted.
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if not math.isfinite(float(loss)):
            raise JobFailure(f"training loss is {loss} at step {state.global_step} "
                             f"(learning rate {logs.get('learning_rate')}): diverged")
        self.last_loss = float(loss)
        if state.global_step % self.every == 0:
            self._write(state)

    def on_save(self, args, state, control, **kwargs):
        self._write(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._write(state)
