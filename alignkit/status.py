"""One status per job: the journal (what was queued) + the backends' states + files on disk.

Each backend (alignkit/backends/) reports its attempts' states (SLURM: one sacct call; the
journal's `blocked`/`cancel` records beat sacct's lagging PENDING; a fresh array missing from
accounting is PENDING). Here they are merged with the files jobs write: a `DONE` file means
COMPLETED whatever the scheduler says. A pending job that waits on an attempt that can no longer
succeed is BLOCKED: `refresh` cancels it (SLURM would leave it pending forever as
DependencyNeverSatisfied) and journals why. Corrupt files (a truncated manifest aside, which
nothing can be read without) are reported in `warnings` and skipped, as collect does.
"""

from __future__ import annotations

import math

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit import backends, journal
from alignkit.backends.base import AttemptState, Backend
from alignkit.contract import paths as jobfiles
from alignkit.contract.redact import config_secrets, redact
from alignkit.contract.errors import UserError
from alignkit.contract.fsio import read_json
from alignkit.journal import Attempt, Journal
from alignkit.sweepdir import SweepDir

FAILED_STATES = frozenset({"FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                           "DEADLINE", "BLOCKED"})
ACTIVE_STATES = frozenset({"PENDING", "HELD", "RUNNING", "REQUEUED", "PREEMPTED", "COMPLETING", "CONFIGURING",
                           "SUSPENDED", "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED"})
HELD_REASON = "held (alignkit release)"  # what the backends give a pending attempt queued with --hold
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Failure|Exit|Interrupt|Preempted)|"
                       r"[A-Za-z_][\w.]*\.[A-Z]\w*)(: .*)?$")


@dataclass
class JobStatus:
    id: str
    name: str
    stage: str
    state: str
    reason: str | None = None
    elapsed_s: int | None = None
    node: str | None = None
    restarts: int = 0
    progress: dict[str, Any] | None = None
    slurm_id: str | None = None
    executor: str | None = None
    attempts: int = 0
    log: str | None = None
    attempt: Attempt | None = field(default=None, repr=False)
    ended_at: float | None = field(default=None, repr=False)  # when it ended (DONE's mtime), for ELAPSED; not in --json
    resources: dict[str, Any] = field(default_factory=dict, repr=False)  # the manifest's; not in --json

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("id", "name", "stage", "state", "reason", "elapsed_s", "node",
                                               "restarts", "progress", "slurm_id", "executor", "attempts",
                                               "log")}


@dataclass
class StudyStatus:
    sweep: str
    sweep_dir: Path
    jobs: list[JobStatus]
    sacct_ok: bool
    sacct_s: float
    warnings: list[str] = field(default_factory=list)
    # stage -> jobs of `runs: selected` benchmarks waiting for the selection (manifest's awaiting_selection)
    awaiting_selection: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for j in self.jobs:
            out.setdefault(j.stage, {})
            out[j.stage][j.state] = out[j.stage].get(j.state, 0) + 1
        return out

    def summary_line(self) -> str:
        return " | ".join(f"{stage}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
                          for stage, states in self.summary().items())

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "sweep": self.sweep, "sweep_dir": str(self.sweep_dir), "time": time.time(),
                "sacct_ok": self.sacct_ok, "warnings": self.warnings, "summary": self.summary(),
                # only while a two-phase study's jobs wait: every other study's --json is as it was
                **({"awaiting_selection": self.awaiting_selection} if self.awaiting_selection else {}),
                "jobs": [j.to_json() for j in self.jobs]}


def latest_sweep(runs: Path = Path("runs")) -> Path:
    """The sweep under `runs/` whose manifest changed last (a sweep dir may sit one or two levels
    down: runs/NAME or runs/GROUP/NAME)."""
    found = []
    for pattern in ("*/manifest.json", "*/*/manifest.json"):
        for m in runs.glob(pattern):
            try:
                found.append((m.stat().st_mtime, m.parent))
            except OSError:
                continue
    if not found:
        raise UserError(f"no sweep directory given and none found under {runs}/ (no {runs}/*/manifest.json); "
                        "give the sweep's output_dir")
    return max(found)[1]


def open_sweep(path: str | os.PathLike | None, command: str = "status") -> SweepDir:
    """The sweep at `path`; without one, the current directory if it is a sweep, else the most
    recent sweep under runs/ (named on stderr, so a wrong guess is seen)."""
    if path is None and not Path("manifest.json").exists():
        path = latest_sweep()
        import sys
        print(f"alignkit {command}: using {path} (most recent sweep under runs/)", file=sys.stderr)
    sd = SweepDir.of(path or ".")
    if not sd.manifest.exists():
        raise UserError(f"{sd.root}: not a sweep directory (no manifest.json; give the sweep's output_dir)")
    return sd


def read_manifest(sd: SweepDir) -> tuple[list[dict[str, Any]], str, list[str], dict[str, int]]:
    """The manifest's usable job entries, the sweep name, one problem per entry skipped, and per stage
    the jobs waiting for the selection (`awaiting_selection`, a two-phase study).
    A manifest that is not JSON at all is an error (one line), as in collect."""
    try:
        manifest = sd.load_manifest()
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{sd.manifest}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise UserError(f"{sd.manifest}: unreadable ({exc.strerror or exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("jobs"), list):
        raise UserError(f"{sd.manifest}: key 'jobs' is missing or not a list")
    jobs, problems = [], []
    for i, j in enumerate(manifest["jobs"]):
        if isinstance(j, dict) and isinstance(j.get("id"), str) and j["id"] and "/" not in j["id"] \
                and j["id"] not in (".", ".."):
            res = j.get("resources")
            jobs.append({"id": j["id"], "name": str(j.get("name", j["id"])), "stage": str(j.get("stage", "?")),
                         "resources": res if isinstance(res, dict) else {}})
        else:
            problems.append(f"{sd.manifest}: jobs[{i}]: no usable 'id'; skipped")
    sweep = manifest.get("sweep")
    return jobs, sweep if isinstance(sweep, str) else sd.root.name, problems, _awaiting(manifest, sd, problems)


def _awaiting(manifest: dict[str, Any], sd: SweepDir, problems: list[str]) -> dict[str, int]:
    """Per stage, the jobs the manifest lists as waiting for the selection (a two-phase study)."""
    out: dict[str, int] = {}
    entries = manifest.get("awaiting_selection", [])
    if not isinstance(entries, list):
        problems.append(f"{sd.manifest}: key 'awaiting_selection' is not a list; ignored")
        return out
    for i, e in enumerate(entries):
        if isinstance(e, dict) and isinstance(e.get("stage"), str):
            out[e["stage"]] = out.get(e["stage"], 0) + 1
        else:
            problems.append(f"{sd.manifest}: awaiting_selection[{i}]: no 'stage'; skipped")
    return out



# ------------------------------------------------------------------------ helpers ------
def log_paths(att: Attempt) -> tuple[Path, Path] | None:
    """stdout/stderr of an attempt's rank 0, where its backend puts them."""
    return backends.get(att.executor).log_paths(att) if att.executor in backends.names() else None


def _tail(path: Path, nbytes: int = 65536) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - nbytes))
            return f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def last_exception_line(stderr: Path) -> str | None:
    """The last `SomeError: message` line of a log (the exception that ended the attempt)."""
    for line in reversed(_tail(stderr)):
        line = line.strip()
        if _EXC_LINE.match(line) and not line.startswith(("submitit", "File ")):
            return redact(line)  # key shapes (sk-..., Bearer ...) never reach the journal or a report
    return None


def _read_object(path: Path, warnings: list[str] | None) -> dict[str, Any] | None:
    """A job's small JSON file as an object; None when missing, or with a warning when it is not one."""
    try:
        obj = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        if warnings is not None:
            warnings.append(f"{path}: unreadable ({type(exc).__name__}); ignored")
        return None
    if not isinstance(obj, dict):
        if warnings is not None:
            warnings.append(f"{path}: expected a JSON object, got {type(obj).__name__}; ignored")
        return None
    return obj


def error_reason(job_dir: Path, warnings: list[str] | None = None) -> str | None:
    """error.json's one-line reason; None when missing; a warning when it is not what jobs write."""
    err = _read_object(job_dir / jobfiles.ERROR, warnings)
    reason = str(err.get("reason") or "") if err is not None else ""
    if not reason:
        return None
    try:  # the key of a judge the job names, where this shell has it: any 8-character run of it masked
        values = config_secrets(read_json(job_dir / jobfiles.CONFIG))
    except (OSError, ValueError):
        values = []
    return redact(reason, values)


def _failure_reason(state: str, job_dir: Path, att: Attempt, rec: AttemptState | None,
                    warnings: list[str]) -> str | None:
    if state == "TIMEOUT":
        return "time limit reached" + (" (requeued too many times)" if rec and rec.restarts else "")
    if state == "OUT_OF_MEMORY":
        return "out of memory (host RAM: raise mem_gb)"
    if state == "NODE_FAIL":
        return "node failure"
    if state == "CANCELLED":
        return "cancelled"
    reason = error_reason(job_dir, warnings)
    if reason:
        return reason
    paths = log_paths(att)
    line = last_exception_line(paths[1]) if paths else None
    if line:
        return line
    if rec and rec.exit_code and rec.exit_code != "0:0":
        return f"exit code {rec.exit_code}"
    return None


_PROGRESS_KEYS = {"step": int, "max_steps": int, "loss": (int, float), "updated_at": (int, float)}
# eval/judge jobs (jobs/eval/task_progress.py) add these; kept out of a training job's --json entry
_TASK_KEYS = {"benchmark": str, "checkpoint": str, "items_done": int}


def _progress(job_dir: Path, warnings: list[str]) -> dict[str, Any] | None:
    path = job_dir / jobfiles.PROGRESS
    p = _read_object(path, warnings)
    if p is None:
        return None
    out = {}
    for k, kind in _PROGRESS_KEYS.items():  # status renders these: a wrong type is dropped, not shown
        v = p.get(k)
        ok = v is None or (isinstance(v, kind) and not isinstance(v, bool)
                           and not (isinstance(v, float) and not math.isfinite(v)))  # --json: no bare NaN/Infinity
        out[k] = v if ok else None
        if not ok:
            warnings.append(f"{path}: '{k}' is not a finite number; ignored")
    for k, kind in _TASK_KEYS.items():
        v = p.get(k)
        if v is not None and isinstance(v, kind) and not isinstance(v, bool):
            out[k] = v
    return out


def _job_files(sd: SweepDir, job_ids: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    base = str(sd.jobs)
    for job_id in job_ids:
        try:
            out[job_id] = set(os.listdir(f"{base}/{job_id}"))
        except OSError:
            out[job_id] = set()
    return out


def _backend(name: str) -> Backend | None:
    return backends.get(name) if name in backends.names() else None


# ---------------------------------------------------------------------- the join -------
def refresh(sd: SweepDir, cancel_blocked: bool = True, stage: str | None = None) -> StudyStatus:
    """Status of every job in the manifest: each backend polled once (SLURM: one sacct call,
    run while the files are read), merged with the files on disk. With `cancel_blocked`, jobs
    found BLOCKED are cancelled and stuck dependencies rewired (see below)."""
    jr = journal.load(sd)
    warnings: list[str] = list(jr.problems)
    t0 = time.perf_counter()
    all_atts = [a for atts in jr.attempts.values() for a in atts]
    polls = {}
    for name in sorted({a.executor for a in all_atts}):
        be = _backend(name)
        if be is None:
            warnings.append(f"{sd.journal}: unknown executor '{name}'; its jobs show UNKNOWN")
            continue
        polls[name] = be.poll(sd, jr, all_atts)
    manifest_jobs, sweep, problems, awaiting = read_manifest(sd)
    warnings += problems
    name_of = {j["id"]: j["name"] for j in manifest_jobs}
    by_key = jr.by_key()
    files = _job_files(sd, [j["id"] for j in manifest_jobs])  # one listdir per job, no stat storm
    states: dict[tuple[str, int | None], AttemptState] = {}
    for poll in polls.values():
        got, notes = poll.result()
        states.update(got)
        warnings += notes
    sacct_s = time.perf_counter() - t0
    sacct_ok = all(p.ok for p in polls.values())

    # raw state of every attempt (dependencies may point at attempts that are no longer latest)
    raw: dict[tuple[str, int | None], tuple[str, str | None]] = {}
    for job_id, atts in jr.attempts.items():
        done = jobfiles.DONE in files.get(job_id, ())
        for att in atts:
            st = states.get(att.key) or AttemptState("UNKNOWN", f"unknown executor '{att.executor}'")
            if done and att is atts[-1]:
                raw[att.key] = ("COMPLETED", None)
            elif att.key in jr.blocked:  # cancelled by an earlier refresh because an input failed
                raw[att.key] = ("BLOCKED", jr.blocked[att.key])
            else:
                raw[att.key] = (st.state, st.reason)

    # BLOCKED: a pending attempt that waits on an attempt that can no longer succeed (cascades)
    newly: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for job_id, atts in jr.attempts.items():
            att = atts[-1]
            # no scheduler id: this machine's driver blocks it itself (local_end BLOCKED)
            if att.array_job_id is None or raw[att.key][0] != "PENDING":
                continue
            for dep in att.waits_on:
                dep_state = raw.get(dep, ("?", None))[0]
                if dep_state in FAILED_STATES:
                    dep_att = by_key.get(dep)
                    dep_name = name_of.get(dep_att.job_id, dep_att.job_id) if dep_att else f"{dep[0]}_{dep[1]}"
                    why = f"dependency {dep_att.stage + ' ' if dep_att else ''}{dep_name} {dep_state}"
                    raw[att.key] = ("BLOCKED", why)
                    newly[job_id] = why
                    changed = True
                    break
    # the scheduler's own verdict (`AttemptState.waiting`). SLURM 22.05 judges the still-unsplit tasks of an `aftercorr`
    # array as a whole: once the upstream array has ended with any task failed, every task left
    # in it reads DependencyNeverSatisfied, its own input COMPLETED or not (seen on the dev
    # cluster: eval 897_15 stuck behind completed train 861_15). So believe it only for an
    # attempt whose inputs we do not know; one whose journaled inputs are all fine gets its
    # dependency set to those inputs alone (`rewire`), and runs.
    # Likewise a task whose inputs are all done (DONE on disk) yet still waits on a dependency:
    # sacct keeps the array record's stale reason (`Dependency`) where squeue already says
    # DependencyNeverSatisfied; its dependency is cleared, which is right whatever SLURM thinks.
    rewire: dict[str, list[tuple[str, int | None]]] = {}
    for job_id, atts in jr.attempts.items():
        att = atts[-1]
        inputs_done = bool(att.waits_on) and all(raw.get(d, ("?", None))[0] == "COMPLETED" for d in att.waits_on)
        waiting = states[att.key].waiting if raw[att.key][0] == "PENDING" and att.key in states else None
        if waiting == "inputs" and inputs_done:
            rewire[job_id] = []
            continue
        if waiting != "never":
            continue
        if att.waits_on:  # none failed: the cascade above would have blocked it
            rewire[job_id] = [d for d in att.waits_on if raw.get(d, ("?", None))[0] != "COMPLETED"]
            raw[att.key] = ("PENDING", "waiting on its own inputs (the scheduler's verdict for the "
                                       "array's remaining tasks overridden)")
            continue
        raw[att.key] = ("BLOCKED", "a dependency failed")
        newly[job_id] = "a dependency failed"
    if cancel_blocked and newly:
        _cancel_blocked(sd, jr, newly)
    if cancel_blocked and rewire:
        for job_id, deps in rewire.items():
            att = jr.latest(job_id)
            be = _backend(att.executor) if att else None
            if be is not None:
                be.rewire(att, deps)

    jobs: list[JobStatus] = []
    for j in manifest_jobs:
        if stage and j["stage"] != stage:
            continue
        job_dir = sd.job(j["id"])
        atts = jr.attempts.get(j["id"], [])
        att = atts[-1] if atts else None
        present = files.get(j["id"], ())
        s = JobStatus(id=j["id"], name=j["name"], stage=j["stage"], state="UNSUBMITTED",
                      attempts=len(atts), attempt=att, resources=j["resources"],
                      progress=_progress(job_dir, warnings) if jobfiles.PROGRESS in present else None)
        if jobfiles.DONE in present:
            s.ended_at = _mtime(job_dir / jobfiles.DONE)
        if att is None:
            if jobfiles.DONE in present:
                s.state = "COMPLETED"
            jobs.append(s)
            continue
        s.executor, s.slurm_id = att.executor, att.sched_id or (f"local:{att.local_id}" if att.local_id else None)
        paths = log_paths(att)
        s.log = str(paths[1]) if paths else None
        s.state, s.reason = raw[att.key]
        if s.state == "PENDING" and s.reason == HELD_REASON:  # its own state: it starts only when released
            s.state = "HELD"
        rec = states.get(att.key)
        if rec:
            s.elapsed_s, s.node, s.restarts = rec.elapsed_s, rec.node, rec.restarts
        if s.ended_at is None and s.state not in ACTIVE_STATES and s.elapsed_s:
            s.ended_at = att.time + s.elapsed_s  # at least this late (queued at att.time, then ran elapsed_s)
        if s.state in FAILED_STATES - {"BLOCKED", "CANCELLED"} or (s.state == "CANCELLED" and not s.reason):
            s.reason = s.reason or _failure_reason(s.state, job_dir, att, rec, warnings)
        jobs.append(s)
    return StudyStatus(sweep, sd.root, jobs, sacct_ok, sacct_s, warnings, awaiting)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _cancel_blocked(sd: SweepDir, jr: Journal, newly: dict[str, str]) -> None:
    atts = [a for jid in newly if (a := jr.latest(jid)) and a.sched_id]
    for name in sorted({a.executor for a in atts}):
        be = _backend(name)
        if be is not None:
            try:
                be.kill([a for a in atts if a.executor == name])
            except UserError:
                pass  # journaled as blocked all the same: shown BLOCKED, cancelled again next time
    for job_id, why in newly.items():
        att = jr.latest(job_id)
        if att and att.sched_id:
            journal.append(sd, {"type": "blocked", "job": job_id, "token": att.token,
                                "sched_ids": [att.sched_id], "reason": why})
            jr.blocked[att.key] = why


def print_warnings(command: str, st: StudyStatus) -> None:
    """Corrupt files and unreachable accounting, one line each on stderr: the command goes on."""
    import sys
    for w in st.warnings:
        print(f"alignkit {command}: warning: {w}", file=sys.stderr)


def backend_attempts(jobs: list[JobStatus]) -> dict[str, list[Attempt]]:
    """The latest attempts of `jobs`, by executor."""
    out: dict[str, list[Attempt]] = {}
    for j in jobs:
        if j.attempt is not None:
            out.setdefault(j.attempt.executor, []).append(j.attempt)
    return out


def select(jobs: list[JobStatus], selectors: list[str], stage: str | None = None) -> list[JobStatus]:
    """Jobs matching any selector: a job id or unique id prefix, a job name, or a SLURM id."""
    pool = [j for j in jobs if stage is None or j.stage == stage]
    if not selectors:
        return pool
    out: list[JobStatus] = []
    for sel in selectors:
        hits = [j for j in pool if sel in (j.id, j.name, j.slurm_id)] or [j for j in pool if j.id.startswith(sel)]
        if not hits:
            raise UserError(f"no job matches '{sel}'" + (f" in stage {stage}" if stage else "")
                            + " (give a job id, id prefix, name or SLURM id; see alignkit status)")
        out += [j for j in hits if j not in out]
    return out


def find_job(jobs: list[JobStatus], text: str, stage: str | None = None) -> JobStatus:
    """The one job `text` names: an exact id, name or SLURM id, else a unique id prefix, else a
    unique part of a name (case-insensitive). Ambiguous: one line naming a few matches."""
    pool = [j for j in jobs if stage is None or j.stage == stage]
    low = text.lower()
    for rule in (lambda j: text in (j.id, j.name, j.slurm_id), lambda j: j.id.startswith(text),
                 lambda j: low in j.name.lower()):
        hits = [j for j in pool if rule(j)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            shown = ", ".join(f"{j.stage} {j.name}" for j in hits[:4])
            raise UserError(f"'{text}' matches {len(hits)} jobs ({shown}{', ...' if len(hits) > 4 else ''}); "
                            "give more of the name, --stage or a job id")
    raise UserError(f"no job matches '{text}'" + (f" in stage {stage}" if stage else "")
                    + " (give a job id, id prefix, name, part of a name or SLURM id; see alignkit status)")
