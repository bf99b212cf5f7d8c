"""The two ways a job ends early on purpose, and the typed config every stage starts from.

`JobFailure` carries a one-line reason that `alignkit status` shows (a model that cannot be
loaded, zero rows after filtering, NaN loss, CUDA OOM, an adapter that changes nothing).
`Preempted` means the job saved what it needs to resume and wants to be requeued.
"""

from __future__ import annotations



class JobFailure(Exception):
    """A failure with a reason a user can act on; the message is one line."""


class Preempted(Exception):
    """Raised by a stage after it saved a resumable checkpoint in answer to a stop request."""
