"""The interface every executor implements, in the shape of submitit's executors.

`launch.py` turns a plan into arrays (`Group`s) with their dependencies wired, pure; a `Backend`
queues them (`queue`), cancels and releases attempts, reports each attempt's state (`poll`) and
where its logs are (`log_paths`). `status.py` merges those states with the files on disk.
A new backend is one new module in this package with one `@register`ed `Backend` subclass.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from alignkit.contract.errors import UserError

if TYPE_CHECKING:  # typing only: the heavy modules are imported where they are used
    from alignkit.plan.model import Job, Plan
    from alignkit.submit.journal import Attempt, Journal
    from alignkit.submit.sweepdir import SweepDir

Key = tuple[str, "int | None"]  # (array or job id, index or None): one attempt
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(value: Any, where: str) -> None:
    """Refuse a value with a control character (a newline would end an `#SBATCH` line and the
    rest would run as a shell command when the job starts)."""
    if isinstance(value, str) and _CONTROL.search(value):
        raise UserError(f"{where}: contains a control character ({_CONTROL.search(value).group()!r}); "
                        f"refused (it could end a line of the generated job script)")


After = list[tuple[str, "list[int] | None"]]  # (array, its element indices; None: all of it / a plain job)


@dataclass
class Group:
    """One array to queue: jobs of one stage and resource class, in array-index order, and the
    scheduler-neutral job graph around it that `launch` wires (each backend words it its own way:
    SLURM's `aftercorr`/`afterok` strings are built in backends/slurm.py).

    `waits_on`: each element's inputs, (array, index) pairs; `after`: their union, an array of
    this call named whole when every element of it is needed; `elementwise`: the array whose
    element i element i waits on (then `after` names that array whole), or None. Arrays of the same
    call are named by placeholder (`${ARRAY_n}`, the n-th array of the call) until `resolve`."""
    stage: str
    jobs: list[Job]
    token: str
    name: str                                    # the scheduler's job name, unique per submission
    waits_on: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    after: After = field(default_factory=list)
    elementwise: str | None = None
    array_job_id: str | None = None
    script: str = ""
    placeholder: str = ""

    @property
    def resources(self):
        return self.jobs[0].resources

    def resolve(self, ids: dict[str, str]) -> None:
        """Name the arrays of this call by the ids the scheduler gave them (placeholder -> id)."""
        self.waits_on = {k: [(ids.get(a, a), i) for a, i in v] for k, v in self.waits_on.items()}
        self.after = [(ids.get(a, a), idx) for a, idx in self.after]
        if self.elementwise:
            self.elementwise = ids.get(self.elementwise, self.elementwise)


def describe_dependency(group: Group, groups: list[Group]) -> str:
    """What a group waits on, in words for `submit`: "after train #123 (element-wise)", "after all
    of merge #130", "after 2 tasks of eval #131"; arrays of this call named by stage and id (a dry
    run's by stage and script number), earlier ones as "earlier array #id"; "" without any."""
    if not group.after and not group.elementwise:
        return ""
    names = {}
    for i, g in enumerate(groups):  # queued: its scheduler id; a dry run's: its script's number (03-train.sbatch)
        label = f"{g.stage} #{g.array_job_id}" if g.array_job_id else f"{g.stage} array {i:02d}"
        names.update({k: label for k in (g.placeholder, g.array_job_id) if k})

    def label(a: str) -> str:
        return names.get(a, f"earlier array #{a}")

    if group.elementwise:
        return f"after {label(group.elementwise)} (element-wise)"
    words = [f"all of {label(a)}" if idx is None else f"{len(idx)} task{'s' if len(idx) > 1 else ''} of {label(a)}"
             for a, idx in group.after]
    text = "after " + ", ".join(words)
    if len(text) > 100:  # many arrays (a merge over several runs' arrays): count them instead
        stages = sorted({label(a).split()[0] for a, _ in group.after})
        n = sum(1 if idx is None else len(idx) for _, idx in group.after)
        text = f"after {n} tasks of {len(group.after)} arrays ({', '.join(stages)})"
    return text


@dataclass(frozen=True)
class Limits:
    """What the cluster lets this user queue (None: no limit known)."""
    max_array_size: int | None = None   # elements per array (indices 0..MaxArraySize-1)
    max_queued: int | None = None       # jobs this user may still queue now (array tasks count one each)
    max_running: int | None = None      # jobs of this user that may run at once (MaxJobs)
    notes: tuple[str, ...] = ()         # where each limit came from, for `plan` and `submit`


@dataclass
class AttemptState:
    state: str
    reason: str | None = None
    elapsed_s: int | None = None
    node: str | None = None
    restarts: int = 0
    exit_code: str | None = None
    # a PENDING attempt held by its dependency: "inputs" (the scheduler waits on them), "never"
    # (the scheduler judges they can never be satisfied); status checks both against the journal
    waiting: str | None = None


@dataclass
class SubmitContext:
    """What a backend needs to queue a plan's arrays."""
    plan: Plan
    sd: SweepDir
    code: Path
    hold: bool
    pending: dict[str, tuple[str, int | None]]   # job id -> attempt key still queued from earlier


def watchdog_s(plan: Plan) -> float:
    """How long a stage that does not poll `stop` (eval, merge) may run on after the signal
    before it is requeued anyway: well inside the signal delay (docs/preemption.md)."""
    return float(min(30, max(5, plan.profile.signal_delay_s // 4)))


def setup_lines(plan: Plan, code: Path) -> list[str]:
    """The code snapshot's PYTHONPATH, then the profile's own setup lines (shell by design)."""
    import shlex
    return [f"export PYTHONPATH={shlex.quote(str(code))}${{PYTHONPATH:+:$PYTHONPATH}}",
            *plan.profile.setup]


class Poll(ABC):
    """A state query under way (status reads the job directories meanwhile)."""

    ok: bool = True  # False when the scheduler's accounting did not answer

    @abstractmethod
    def result(self) -> tuple[dict[Key, AttemptState], list[str]]:
        """States of the attempts asked for, and warnings (e.g. accounting unavailable)."""


class Backend(ABC):
    name: ClassVar[str]
    script_suffix: ClassVar[str] = ".sh"       # a dry run's file names: dry-run/NN-<stage><suffix>
    # the backend whose scripts a dry run writes for this executor (None: its own)
    previews_with: ClassVar[str | None] = None

    def folder(self, sd: SweepDir) -> Path:
        """Where an attempt's submitit files go (`%j`: the scheduler's job id)."""
        return sd.root / self.name / "%j"

    def dry_run_limits(self, plan: Plan) -> Limits:
        """The limits a dry run splits arrays by: those known without queueing anything."""
        return Limits()

    def check_profile(self, profile: Any, problems: Any) -> None:
        """Refuse, through `problems.add(key, why)`, the profile options this backend owns and
        would put into its scripts (a profile is checked by every backend when loaded)."""
        return None

    def unreachable(self) -> str | None:
        """Why this backend's scheduler cannot be asked anything here (None: it answers)."""
        return None

    def check(self, plan: Plan) -> None:
        """Raise UserError when this backend cannot queue `plan` here (no controller, ...)."""
        return None

    def limits(self, plan: Plan) -> Limits:
        return Limits()

    def reconcile(self, sd: SweepDir) -> list[str]:
        """Settle what a killed submit left half-done; the ids recovered."""
        return []

    @abstractmethod
    def script(self, ctx: SubmitContext, group: Group, folder: Path) -> str:
        """The job script this backend would run for `group` (dry run, golden tests)."""

    def dependency(self, group: Group) -> str | None:
        """`group`'s dependency in this scheduler's own words (a dry run's jobs.json); None: it
        waits on nothing, or this scheduler has no such text."""
        return None

    @abstractmethod
    def queue(self, ctx: SubmitContext, groups: list[Group]) -> int:
        """Queue `groups` in order (journaling them); the number of scheduler calls made."""

    @abstractmethod
    def poll(self, sd: SweepDir, jr: Journal, attempts: list[Attempt]) -> Poll:
        """Start a state query for `attempts` (their latest records)."""

    def accounting(self, attempts: list[Attempt]) -> tuple[dict[Key, AttemptState], str] | None:
        """For `collect`: each finished or running attempt's scheduler state and elapsed time, and
        what answered (or why nothing did); None when this backend keeps no accounting."""
        return None

    @abstractmethod
    def kill(self, attempts: list[Attempt]) -> list[str]:
        """Stop these attempts in the scheduler (no journal record); the ids stopped."""

    def cancel(self, sd: SweepDir, attempts: list[Attempt]) -> list[str]:
        """`alignkit cancel`: stop these attempts and journal a `cancel` record."""
        from alignkit.submit import journal
        ids = self.kill(attempts)
        journal.append(sd, {"type": "cancel", "jobs": [a.job_id for a in attempts], "sched_ids": ids,
                            "local_jobs": []})
        return ids

    @abstractmethod
    def release(self, sd: SweepDir, attempts: list[Attempt]) -> list[str]:
        """Let held attempts start and journal a `release` record; the ids released."""

    def rewire(self, att: Attempt, waits_on: list[Key]) -> bool:
        """Make a pending attempt wait on `waits_on` only (none: on nothing); False if it could not."""
        return False

    def log_paths(self, att: Attempt) -> tuple[Path, Path] | None:
        """stdout/stderr of an attempt's rank 0 (submitit names them after the job id)."""
        sid = att.submitit_id
        if not sid or not att.folder:
            return None
        folder = Path(att.folder.replace("%j", sid))
        return folder / f"{sid}_0_log.out", folder / f"{sid}_0_log.err"
