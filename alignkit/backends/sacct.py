"""One `sacct` call for a whole study, parsed into one record per array task.

`status` refreshes with a single call whatever the number of jobs: the arrays' ids go in one
`-j a,b,c` list. `-X` keeps allocations only (array tasks `123_4`, plain jobs `123`) and drops
the `.batch`/`.0` steps; `-D` keeps every attempt of a requeued task, so restarts = rows - 1
and the last row is the current attempt. Pending tasks of an array come as one row with a
range (`123_[5-9%2]`, `123_[1,3-4]`), expanded here.

sacct lags (docs/slurm.md): a fresh array is missing for up to ~5 s and a finished task may
still read RUNNING for a few seconds. Callers treat a missing record as "not known yet", not as
an error; `query` never raises on an unreadable line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

FIELDS = ("JobID", "JobName", "State", "ExitCode", "ElapsedRaw", "NodeList", "Reason")

# sacct states after which a task never runs again (unless someone requeues it)
TERMINAL_FAILED = frozenset({"FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL",
                             "BOOT_FAIL", "DEADLINE", "PREEMPTED_FINAL"})


@dataclass(frozen=True)
class Record:
    state: str             # sacct state without the "by <uid>" suffix: CANCELLED, not "CANCELLED by 0"
    elapsed_s: int
    node: str | None
    restarts: int          # earlier attempts of this task in accounting (requeues)
    exit_code: str         # "rc:signal"
    reason: str | None     # pending reason (Dependency, JobHeldUser, DependencyNeverSatisfied, ...)
    name: str = ""
    exact: bool = True     # False: from a pending-range row (123_[1-9]), which sacct keeps stale
                           # for tasks released or started since (their own row comes later)


Key = tuple[str, "int | None"]  # (array or plain job id, array index or None for a plain job)

_RANGE = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")
_TASK = re.compile(r"^(\d+)_(\d+)$")
_PLAIN = re.compile(r"^(\d+)$")


def parse_job_id(text: str) -> list[Key]:
    """`123_4` → [(123, 4)]; `123_[1,3-4%2]` → [(123,1),(123,3),(123,4)]; `123` → [(123, None)].
    Steps (`123_4.batch`) and anything unreadable → []."""
    text = text.strip()
    if m := _TASK.match(text):
        return [(m.group(1), int(m.group(2)))]
    if m := _PLAIN.match(text):
        return [(m.group(1), None)]
    if m := _RANGE.match(text):
        keys: list[Key] = []
        for part in m.group(2).split(","):
            if not part:
                continue
            lo, _, hi = part.partition("-")
            keys.extend((m.group(1), i) for i in range(int(lo), int(hi or lo) + 1))
        return keys
    return []


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def parse(output: str) -> dict[Key, Record]:
    """Parse `sacct -n -P -X -D -o <FIELDS>` output. With -D a task appears once per attempt,
    oldest first; the last row wins and the earlier ones count as restarts."""
    rows: dict[Key, list[list[str]]] = {}
    ranged: dict[Key, list[str]] = {}
    for line in output.splitlines():
        cols = line.split("|")
        if len(cols) < len(FIELDS):
            continue
        keys = parse_job_id(cols[0])
        if "[" in cols[0]:  # a task's own row wins over the range row that still lists it
            for key in keys:
                ranged[key] = cols
            continue
        for key in keys:
            rows.setdefault(key, []).append(cols)
    for key, cols in ranged.items():
        if key not in rows:
            rows[key] = [cols + ["range"]]
    out: dict[Key, Record] = {}
    for key, attempts in rows.items():
        cols = attempts[-1]
        state = cols[2].split()[0] if cols[2].strip() else "UNKNOWN"
        reason = cols[6].strip() or None
        out[key] = Record(state=state, elapsed_s=_int(cols[4]), node=(cols[5].strip() or None)
                          if cols[5].strip() not in ("None assigned", "") else None,
                          restarts=len(attempts) - 1, exit_code=cols[3].strip(),
                          reason=None if reason == "None" else reason, name=cols[1],
                          exact=cols[-1] != "range")
    return out


def command(array_job_ids: list[str] | set[str]) -> list[str]:
    ids = ",".join(sorted({str(i) for i in array_job_ids}, key=lambda s: int(s) if s.isdigit() else 0))
    return ["sacct", "-n", "-P", "-X", "-D", "-j", ids, "-o", ",".join(FIELDS)]


class SacctError(RuntimeError):
    """sacct is missing or the accounting daemon does not answer."""


def available() -> bool:
    return shutil.which("sacct") is not None


class Pending:
    """A sacct call under way: start it, do other work (status reads the job directories
    meanwhile), then `result()`. So a status refresh costs about one sacct call, not the sum."""

    def __init__(self, array_job_ids: list[str] | set[str], timeout_s: float = 30.0):
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None
        if not array_job_ids:
            return
        try:
            self.proc = subprocess.Popen(command(array_job_ids), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
        except FileNotFoundError as exc:
            raise SacctError("sacct not found: is this a SLURM login node?") from exc

    def result(self) -> dict[Key, Record]:
        if self.proc is None:
            return {}
        try:
            out, err = self.proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.communicate()
            raise SacctError(f"sacct did not answer within {self.timeout_s:.0f} s") from exc
        if self.proc.returncode != 0:
            msg = (err.strip().splitlines() or [f"exit code {self.proc.returncode}"])[-1]
            raise SacctError(f"sacct failed: {msg}")
        return parse(out)


def query(array_job_ids: list[str] | set[str], timeout_s: float = 30.0) -> dict[Key, Record]:
    """One sacct call for all `array_job_ids`; {(array_id, index): Record}. Plain (non-array)
    jobs are keyed (job_id, None)."""
    return Pending(array_job_ids, timeout_s).result()


def query_by_name(names: list[str], timeout_s: float = 30.0) -> dict[str, list[str]]:
    """Job ids queued under each job name (squeue first: it knows a job the instant sbatch
    returns; then sacct, which also knows finished ones). Used to find arrays that a killed
    `submit` queued but never journaled."""
    found: dict[str, set[str]] = {n: set() for n in names}
    if not names:
        return {}
    joined = ",".join(names)
    for cmd in (["squeue", "-h", "-r", "-n", joined, "-o", "%F|%j"],
                ["sacct", "-n", "-P", "-X", "--starttime", "now-7days", "--name", joined, "-o", "JobID,JobName"]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (FileNotFoundError, subprocess.TimeoutExpired):
            continue
        for line in proc.stdout.splitlines():
            jid, _, name = line.partition("|")
            keys = parse_job_id(jid) or ([(jid.strip(), None)] if jid.strip().isdigit() else [])
            if name in found:
                found[name].update(k[0] for k in keys)
    return {n: sorted(ids) for n, ids in found.items()}
