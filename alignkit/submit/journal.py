"""The sweep's journal.jsonl: append-only records of what was queued, and reading them back.

Record types (one JSON object per line, every one has "type" and "time"):
  intent       written *before* sbatch: token, stage, sbatch job name, job ids in array order.
               An intent without a matching submission means a submit was killed mid-way; the
               next submit looks the job name up in squeue/sacct (SlurmBackend.reconcile).
  submission   an array (or one job) is queued: token, stage, executor, array_job_id (null for
               the local executor), jobs {job id: array index or null}, waits_on {job id:
               [[array id, index or null], ...]} (what each element waits for), dependency (the
               sbatch string), hold, code (snapshot folder), folder (submitit's log folder).
  recovered    a submission found by reconciling an intent (same fields as submission).
  rollback     a submit failed part-way; its tokens' arrays were cancelled: tokens, reason.
  abandoned    an intent whose sbatch never queued anything: token.
  blocked      a job whose dependency can never be satisfied was cancelled: sched_ids, reason.
  cancel       the user cancelled: jobs [job ids], sched_ids, local_jobs [job ids: it stops their
               attempts journaled before it, never a later resubmit].
  release      the user released held jobs: sched_ids / tokens.
  local_start / local_end   the local driver started / finished a job: job, token, local_id,
               state (COMPLETED, FAILED, CANCELLED, BLOCKED), reason.
Scheduler ids are neutral: `sched_ids` name attempts as the scheduler does (`Attempt.sched_id`:
an array task `<array>_<index>`, or the array/job id alone); journals written before this name
was chosen call the field `slurm_ids` and are read the same (`_renamed`).
Appends are single write() calls on an O_APPEND descriptor; a torn last line (a writer killed
mid-write) is skipped silently; any other unreadable line or record of the wrong shape is
skipped and named in `Journal.problems` (status, logs and cancel print it and go on).
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from alignkit.contract.errors import UserError
from alignkit.submit.sweepdir import SweepDir


def append(sd: SweepDir, record: dict[str, Any]) -> dict[str, Any]:
    record = {"time": time.time(), **record}
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
    sd.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(sd.journal, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)  # & ~umask, like open()
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # an earlier append was torn (disk full, killed): keep this record whole
        if os.write(fd, line) != len(line):  # a short write is how a nearly full disk answers
            raise OSError(errno.ENOSPC, "short write: no space left on device", str(sd.journal))
        os.fsync(fd)
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(sd.journal)) from exc
        raise
    finally:
        os.close(fd)
    return record


@dataclass
class Attempt:
    """One queued attempt of a job (a requeue by SLURM stays the same attempt)."""
    job_id: str
    token: str
    stage: str
    executor: str
    array_job_id: str | None
    index: int | None
    time: float
    hold: bool
    folder: str
    waits_on: list[tuple[str, int | None]] = field(default_factory=list)
    local_id: str | None = None

    @property
    def sched_id(self) -> str | None:
        """The scheduler's id of this attempt: an array task `A_i`, a plain job `A`; None when the
        executor gives none (local)."""
        if self.array_job_id is None:
            return None
        return self.array_job_id if self.index is None else f"{self.array_job_id}_{self.index}"

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.array_job_id or f"local:{self.token}:{self.job_id}", self.index)

    @property
    def submitit_id(self) -> str | None:
        """The id submitit names the log files after (array: A_i, local: controller pid)."""
        return self.sched_id if self.array_job_id is not None else self.local_id


@dataclass
class Journal:
    records: list[dict[str, Any]]
    attempts: dict[str, list[Attempt]]           # job id -> attempts, oldest first
    blocked: dict[tuple[str, int | None], str]   # attempt key -> reason
    cancelled: set[tuple[str, int | None]]       # attempt keys the user cancelled
    local_end: dict[tuple[str, int | None], dict[str, Any]]
    pending_intents: list[dict[str, Any]]        # intents with no submission/abandon/rollback
    released: set[str] = field(default_factory=set)  # scheduler ids released by `alignkit release`
    problems: list[str] = field(default_factory=list)  # records skipped: file:line, why

    def latest(self, job_id: str) -> Attempt | None:
        a = self.attempts.get(job_id)
        return a[-1] if a else None

    def by_key(self) -> dict[tuple[str, int | None], Attempt]:
        return {a.key: a for atts in self.attempts.values() for a in atts}

    def array_ids(self) -> set[str]:
        return {a.array_job_id for atts in self.attempts.values() for a in atts if a.array_job_id}


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _index(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool))


def _jobs(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _index(i) for k, i in v.items())


def _waits(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(ws, list) and all(isinstance(w, list) and len(w) == 2 and _str(w[0]) and _index(w[1]) for w in ws)
        for ws in v.values())


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


_SUBMISSION = {"token": _str, "executor": _str, "jobs": _jobs, "time": _num}
# required fields of each record type and what they must hold; optional ones are checked when present
REQUIRED: dict[str, dict[str, Any]] = {
    "submission": _SUBMISSION, "recovered": _SUBMISSION,
    "intent": {"token": _str, "name": _str, "jobs": _strs},
    "rollback": {"tokens": _strs}, "abandoned": {"token": _str},
    "blocked": {"sched_ids": _strs}, "cancel": {}, "release": {},
    "local_start": {"token": _str, "job": _str, "local_id": lambda v: _str(v) or _num(v), "time": _num},
    "local_end": {"token": _str, "job": _str, "state": _str, "time": _num},
}
OPTIONAL: dict[str, Any] = {"array_job_id": _opt_str, "waits_on": _waits, "folder": _str, "stage": _str, "sched_ids": _strs,
                            "local_jobs": _strs, "tokens": _strs, "reason": _opt_str}


# One path component: a job id or token becomes a path (jobs/<id>, local/HOLD-<token>), so one
# read back that is not safe is refused (exit 2, naming the line), not skipped (issue 12 item 2).
_SAFE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,255}")
_ID_KEYS = ("job", "jobs", "local_jobs", "waits_on", "token", "tokens")


def _check_ids(r: dict[str, Any], where: str) -> None:
    for key in _ID_KEYS:
        value = r.get(key)
        for v in (list(value) if isinstance(value, (list, dict)) else [value]):
            if isinstance(v, str) and (not _SAFE_ID.fullmatch(v) or v in (".", "..")):  # other types: _bad
                raise UserError(f"{where}: key '{key}': {v!r} is not a safe job id or token "
                                f"(letters, digits, '.', '_', '-'; not '.' or '..')")


def read_records(sd: SweepDir) -> tuple[list[dict[str, Any]], list[str]]:
    """The journal's records in order, and one problem per line skipped: not JSON, not an object,
    an unknown type, or a field of the wrong type. A torn last line (a writer killed mid-append)
    is skipped silently. A job id or token that is not one safe path component is refused."""
    try:
        text = sd.journal.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"{sd.journal}: unreadable ({exc.strerror or exc}); ignored"]
    lines = text.split("\n")
    records, problems = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            if n < len(lines):  # the last piece has no newline yet: torn, not corrupt
                problems.append(f"{sd.journal}:{n}: not a JSON record; skipped")
            continue
        if isinstance(r, dict):  # a hostile id is refused whatever else is wrong with the record
            _check_ids(r, f"{sd.journal}: line {n}")
            r = _renamed(r)
        why = _bad(r)
        if why:
            problems.append(f"{sd.journal}:{n}: {why}; skipped")
            continue
        records.append(r)
    return records, problems


# fields renamed since journals were first written: old name -> new name (read either)
RENAMED = {"slurm_ids": "sched_ids"}


def _renamed(r: dict[str, Any]) -> dict[str, Any]:
    """An old record under today's field names (a journal outlives the code that wrote it)."""
    if not any(old in r for old in RENAMED):
        return r
    return {RENAMED.get(k, k) if RENAMED.get(k, k) not in r else k: v for k, v in r.items()}


def _bad(r: Any) -> str | None:
    if not isinstance(r, dict):
        return f"expected a JSON object, got {type(r).__name__}"
    kind = r.get("type")
    if not isinstance(kind, str) or kind not in REQUIRED:
        return f"unknown record type {kind!r}"
    for key, ok in REQUIRED[kind].items():
        if key not in r or not ok(r[key]):
            return f"{kind} record: '{key}' is missing or of the wrong type"
    for key, ok in OPTIONAL.items():
        if key in r and not ok(r[key]):
            return f"{kind} record: '{key}' is of the wrong type"
    return None


def load(sd: SweepDir) -> Journal:
    records, problems = read_records(sd)
    rolled_back = {t for r in records if r.get("type") == "rollback" for t in r.get("tokens", [])}
    settled = rolled_back | {r["token"] for r in records
                             if r.get("type") in ("submission", "recovered", "abandoned")}
    attempts: dict[str, list[Attempt]] = {}
    blocked: dict[tuple[str, int | None], str] = {}
    cancelled: set[tuple[str, int | None]] = set()
    local_end: dict[tuple[str, int | None], dict[str, Any]] = {}
    local_ids: dict[tuple[str, str], str] = {}
    for r in records:
        kind = r.get("type")
        if kind in ("submission", "recovered") and r["token"] not in rolled_back:
            for job_id, index in r["jobs"].items():
                waits = [tuple(w) for w in r.get("waits_on", {}).get(job_id, [])]
                attempts.setdefault(job_id, []).append(Attempt(
                    job_id=job_id, token=r["token"], stage=r.get("stage", ""), executor=r["executor"],
                    array_job_id=r.get("array_job_id"), index=index, time=r["time"],
                    hold=bool(r.get("hold")), folder=r.get("folder", ""), waits_on=waits))  # type: ignore[arg-type]
        elif kind == "local_start":
            local_ids[(r["token"], r["job"])] = str(r["local_id"])
        elif kind == "local_end":
            local_end[(f"local:{r['token']}:{r['job']}", None)] = r
    for atts in attempts.values():
        for a in atts:
            if a.array_job_id is None:  # no scheduler id: run by this machine's driver (local_start)
                a.local_id = local_ids.get((a.token, a.job_id))
    by_sched = {a.sched_id: a for atts in attempts.values() for a in atts if a.sched_id}
    seen: dict[str, int] = {}  # job id -> its attempts journaled so far: a cancel stops only those
    for r in records:
        kind = r.get("type")
        if kind in ("submission", "recovered") and r["token"] not in rolled_back:
            for job_id in r["jobs"]:
                seen[job_id] = seen.get(job_id, 0) + 1
        elif kind == "blocked":
            for sid in r.get("sched_ids", []):
                if sid in by_sched:
                    blocked[by_sched[sid].key] = r.get("reason", "dependency failed")
        elif kind == "cancel":
            for sid in r.get("sched_ids", []):
                if sid in by_sched:
                    cancelled.add(by_sched[sid].key)
            for job_id in r.get("local_jobs", []):  # by job id: not a resubmit made after it
                for a in attempts.get(job_id, [])[:seen.get(job_id, 0)]:
                    if a.array_job_id is None:  # a scheduler's attempts are cancelled by sched_ids
                        cancelled.add(a.key)
    pending = [r for r in records if r.get("type") == "intent" and r["token"] not in settled]
    released = {sid for r in records if r.get("type") == "release" for sid in r.get("sched_ids", [])}
    return Journal(records, attempts, blocked, cancelled, local_end, pending, released, problems)
