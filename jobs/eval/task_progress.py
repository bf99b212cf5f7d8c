"""progress.json for eval and judge jobs: the same file and keys training writes
(jobs/progress.py: step, max_steps, loss, updated_at) so `alignkit status` shows "i/n", plus
what the step is (benchmark, checkpoint) and items done so far.

A step is one (checkpoint, benchmark) pair. Writes are atomic and at most one per `every_s`
seconds (the first and the last always go out), so a fast benchmark loop costs nothing.
No torch/transformers import: the judge runs on CPU nodes.
"""

from __future__ import annotations

import time
from pathlib import Path

from alignkit.contract.fsio import atomic_write_json
from alignkit.contract import paths as jobfiles


class TaskProgress:
    def __init__(self, job_dir: Path, total: int, every_s: float = 5.0, clock=time.monotonic) -> None:
        self.path = Path(job_dir) / jobfiles.PROGRESS
        self.total = max(0, int(total))
        self.every_s = every_s
        self.clock = clock
        self.step = 0
        self.items_done = 0
        self.benchmark: str | None = None
        self.checkpoint: str | None = None
        self._last: float | None = None
        self.writes = 0

    def start(self, checkpoint: str, benchmark: str) -> None:
        """Step `step + 1` of `total` begins."""
        self.checkpoint, self.benchmark = str(checkpoint), str(benchmark)
        self._write(force=self._last is None)

    def done(self, items: int = 0) -> None:
        """The current step ended, having handled `items` items (prompts, verdicts)."""
        self.step = min(self.total, self.step + 1)
        self.items_done += int(items)
        self._write(force=self.step >= self.total)

    def _write(self, force: bool = False) -> None:
        now = self.clock()
        if not force and self._last is not None and now - self._last < self.every_s:
            return
        self._last = now
        self.writes += 1
        atomic_write_json(self.path, {"step": self.step, "max_steps": self.total, "loss": None,
                                      "updated_at": time.time(), "benchmark": self.benchmark,
                                      "checkpoint": self.checkpoint, "items_done": self.items_done})
