"""The two ways a job ends early on purpose, and the typed config every stage starts from.

`JobFailure` carries a one-line reason that `alignkit status` shows (a model that cannot be
loaded, zero rows after filtering, NaN loss, CUDA OOM, an adapter that changes nothing).
`Preempted` means the job saved what it needs to resume and wants to be requeued.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class JobFailure(Exception):
    """A failure with a reason a user can act on; the message is one line."""


class Preempted(Exception):
    """Raised by a stage after it saved a resumable checkpoint in answer to a stop request."""


def typed_config(config: Any, job_dir: str | Path, stage: str) -> Any:
    """A stage's typed config (alignkit.contract); a plain dict (config.json's content, from a test or
    an older caller) goes through the strict loader, and a bad one fails the job with the loader's
    one line naming the file and key."""
    if not isinstance(config, dict):
        return config
    from alignkit import contract
    from alignkit.contract import paths
    from alignkit.contract.errors import UserError

    where = str(Path(job_dir) / paths.CONFIG)
    if config.get("stage") != stage:
        raise JobFailure(f"{where}: stage: expected {stage!r}, got {config.get('stage')!r}")
    try:
        return contract.parse(config, where)
    except UserError as exc:
        raise JobFailure(str(exc)) from None
