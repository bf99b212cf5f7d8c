"""One status per job: the journal (what was queued) + one sacct call + what jobs wrote on disk.

Precedence: a `DONE` file means COMPLETED whatever the scheduler says (sacct lags); a journaled
`blocked`/`cancel` record beats sacct's lagging PENDING; then sacct's state for the job's latest
attempt; with no sacct row yet (fresh arrays reach accounting seconds late) a recent attempt is
PENDING. A pending job that waits on an attempt that can no longer succeed is BLOCKED: `refresh`
cancels it (SLURM would leave it pending forever as DependencyNeverSatisfied) and journals why.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit import journal, sacct
from alignkit.errors import UserError
from alignkit.fsio import read_json
from alignkit.journal import Attempt, Journal
from alignkit.sweepdir import SweepDir

FAILED_STATES = frozenset({"FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                           "DEADLINE", "BLOCKED"})
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "PREEMPTED", "COMPLETING", "CONFIGURING",
                           "SUSPENDED", "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED"})
FRESH_S = 300.0  # an attempt this young and missing from sacct is taken as PENDING (accounting lag)
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
                "jobs": [j.to_json() for j in self.jobs]}


def open_sweep(path: str | os.PathLike | None) -> SweepDir:
    sd = SweepDir.of(path or ".")
    if not sd.manifest.exists():
        raise UserError(f"{sd.root}: not a sweep directory (no manifest.json; give the sweep's output_dir)")
    return sd


# ------------------------------------------------------------------------ helpers ------
def log_paths(att: Attempt) -> tuple[Path, Path] | None:
    """stdout/stderr of an attempt's rank 0 (submitit names them after the job id)."""
    sid = att.submitit_id
    if not sid or not att.folder:
        return None
    folder = Path(att.folder.replace("%j", sid))
    return folder / f"{sid}_0_log.out", folder / f"{sid}_0_log.err"


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
            return line
    return None


def _failure_reason(state: str, job_dir: Path, att: Attempt, rec: sacct.Record | None) -> str | None:
    if state == "TIMEOUT":
        return "time limit reached" + (" (requeued too many times)" if rec and rec.restarts else "")
    if state == "OUT_OF_MEMORY":
        return "out of memory (host RAM: raise mem_gb)"
    if state == "NODE_FAIL":
        return "node failure"
    if state == "CANCELLED":
        return "cancelled"
    err = job_dir / "error.json"
    if err.exists():
        try:
            return str(read_json(err).get("reason") or "") or None
        except (OSError, ValueError):
            pass
    paths = log_paths(att)
    line = last_exception_line(paths[1]) if paths else None
    if line:
        return line
    if rec and rec.exit_code and rec.exit_code != "0:0":
        return f"exit code {rec.exit_code}"
    return None


def _progress(job_dir: Path) -> dict[str, Any] | None:
    try:
        p = read_json(job_dir / "progress.json")
        return {k: p.get(k) for k in ("step", "max_steps", "loss", "updated_at")}
    except (OSError, ValueError):
        return None


def _job_files(sd: SweepDir, job_ids: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    base = str(sd.jobs)
    for job_id in job_ids:
        try:
            out[job_id] = set(os.listdir(f"{base}/{job_id}"))
        except OSError:
            out[job_id] = set()
    return out


def _pid_alive(pid: str | None) -> bool:
    if not pid or not pid.isdigit():
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


def driver_alive(sd: SweepDir, token: str) -> bool:
    try:
        return _pid_alive((sd.root / "local" / f"driver-{token}.pid").read_text().strip())
    except OSError:
        return False


# ---------------------------------------------------------------------- the join -------
def _local_state(sd: SweepDir, jr: Journal, att: Attempt, job_dir: Path) -> tuple[str, str | None, int | None]:
    end = jr.local_end.get(att.key)
    start = next((r for r in jr.records if r.get("type") == "local_start" and r.get("token") == att.token
                  and r.get("job") == att.job_id), None)
    elapsed = None
    if start:
        elapsed = int((end["time"] if end else time.time()) - start["time"])
    if end:
        return end["state"], end.get("reason"), elapsed
    if att.key in jr.cancelled:
        return "CANCELLED", "cancelled", elapsed
    if start and _pid_alive(att.local_id):
        return "RUNNING", None, elapsed
    if driver_alive(sd, att.token):
        held = (sd.root / "local" / f"HOLD-{att.token}").exists()
        return "PENDING", ("held (alignkit release)" if held else None), elapsed
    if (job_dir / "error.json").exists():
        return "FAILED", None, elapsed
    return "CANCELLED", "the local driver stopped before this job finished", elapsed


def _held(att: Attempt, jr: Journal) -> bool:
    return att.hold and att.slurm_id not in jr.released and att.array_job_id not in jr.released


def _slurm_state(att: Attempt, rec: sacct.Record | None, jr: Journal) -> tuple[str, str | None]:
    if att.key in jr.blocked:
        return "BLOCKED", jr.blocked[att.key]
    if rec is None:
        if att.key in jr.cancelled:
            return "CANCELLED", "cancelled"
        if time.time() - att.time < FRESH_S:
            return "PENDING", ("held (alignkit release)" if _held(att, jr) else "queued (not in accounting yet)")
        return "UNKNOWN", "not found in sacct"
    state = rec.state
    if att.key in jr.cancelled and state in ("PENDING", "REQUEUED"):
        return "CANCELLED", "cancelled"  # sacct still shows the cancelled task pending for a while
    sid = att.submitit_id
    if not rec.exact and sid and os.path.exists(f"{att.folder.replace('%j', sid)}/{sid}_0_log.out"):
        return "RUNNING", "started (accounting lags)"  # the range row is stale for this task
    if not rec.exact and att.slurm_id in jr.released and att.key not in jr.cancelled:
        return "PENDING", "released (accounting lags)"
    if state == "COMPLETED":  # a job that succeeded wrote DONE before exiting (checked by the caller)
        return "FAILED", "ended without writing DONE"
    if state == "PENDING":
        if rec.reason in ("JobHeldUser", "JobHeldAdmin") or (rec.reason is None and _held(att, jr)):
            return "PENDING", "held (alignkit release)"  # sacct fills Reason in a while later
        return "PENDING", rec.reason  # DependencyNeverSatisfied: BLOCKED, decided in refresh
    return state, None


def refresh(sd: SweepDir, cancel_blocked: bool = True, stage: str | None = None) -> StudyStatus:
    """Status of every job in the manifest, with one sacct call (run while the files are read)."""
    jr = journal.load(sd)
    warnings: list[str] = []
    t0 = time.perf_counter()
    recs: dict[sacct.Key, sacct.Record] = {}
    sacct_ok = True
    pending: sacct.Pending | None = None
    try:
        pending = sacct.Pending(jr.array_ids())
    except sacct.SacctError as exc:
        sacct_ok = False
        warnings.append(f"{exc}: states come from files on disk only")
    manifest = sd.load_manifest()
    name_of = {j["id"]: j["name"] for j in manifest["jobs"]}
    by_key = jr.by_key()
    files = _job_files(sd, [j["id"] for j in manifest["jobs"]])  # one listdir per job, no stat storm
    if pending is not None:
        try:
            recs = pending.result()
        except sacct.SacctError as exc:
            sacct_ok = False
            warnings.append(f"{exc}: states come from files on disk only")
    sacct_s = time.perf_counter() - t0

    # raw state of every attempt (dependencies may point at attempts that are no longer latest)
    raw: dict[tuple[str, int | None], tuple[str, str | None]] = {}
    for job_id, atts in jr.attempts.items():
        done = "DONE" in files.get(job_id, ())
        for att in atts:
            if att.executor == "local":
                st, why, _ = _local_state(sd, jr, att, sd.job(job_id))
            else:
                # a task's row only: sacct may briefly show a raw array id for *some* task
                rec = recs.get(att.key)
                st, why = _slurm_state(att, rec, jr) if sacct_ok else ("UNKNOWN", "sacct unavailable")
            if done and att is atts[-1]:
                st, why = "COMPLETED", None
            raw[att.key] = (st, why)

    # BLOCKED: a pending attempt that waits on an attempt that can no longer succeed (cascades)
    newly: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for job_id, atts in jr.attempts.items():
            att = atts[-1]
            if att.executor == "local" or raw[att.key][0] != "PENDING":
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
    # SLURM's own verdict (a dependency we could not see fail, e.g. a lagging sacct row)
    for job_id, atts in jr.attempts.items():
        if raw[atts[-1].key] == ("PENDING", "DependencyNeverSatisfied"):
            raw[atts[-1].key] = ("BLOCKED", "a dependency failed")
            newly[job_id] = "a dependency failed"
    if cancel_blocked and newly:
        _cancel_blocked(sd, jr, newly)

    jobs: list[JobStatus] = []
    for j in manifest["jobs"]:
        if stage and j["stage"] != stage:
            continue
        job_dir = sd.job(j["id"])
        atts = jr.attempts.get(j["id"], [])
        att = atts[-1] if atts else None
        present = files.get(j["id"], ())
        s = JobStatus(id=j["id"], name=j["name"], stage=j["stage"], state="UNSUBMITTED",
                      attempts=len(atts), attempt=att,
                      progress=_progress(job_dir) if "progress.json" in present else None)
        if att is None:
            if "DONE" in present:
                s.state = "COMPLETED"
            jobs.append(s)
            continue
        s.executor, s.slurm_id = att.executor, att.slurm_id or (f"local:{att.local_id}" if att.local_id else None)
        sid = att.submitit_id
        s.log = f"{att.folder.replace('%j', sid)}/{sid}_0_log.err" if sid and att.folder else None
        s.state, s.reason = raw[att.key]
        if att.executor == "local":
            _, _, s.elapsed_s = _local_state(sd, jr, att, job_dir)
        else:
            rec = recs.get(att.key)
            if rec:
                s.elapsed_s, s.node, s.restarts = rec.elapsed_s, rec.node, rec.restarts
        if s.state in FAILED_STATES - {"BLOCKED", "CANCELLED"} or (s.state == "CANCELLED" and not s.reason):
            s.reason = s.reason or _failure_reason(s.state, job_dir, att, recs.get(att.key))
        jobs.append(s)
    return StudyStatus(manifest.get("sweep", sd.root.name), sd.root, jobs, sacct_ok, sacct_s, warnings)


def _cancel_blocked(sd: SweepDir, jr: Journal, newly: dict[str, str]) -> None:
    ids = [a.slurm_id for jid in newly if (a := jr.latest(jid)) and a.slurm_id]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)
    for job_id, why in newly.items():
        att = jr.latest(job_id)
        if att and att.slurm_id:
            journal.append(sd, {"type": "blocked", "job": job_id, "token": att.token,
                                "slurm_ids": [att.slurm_id], "reason": why})
            jr.blocked[att.key] = why


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
