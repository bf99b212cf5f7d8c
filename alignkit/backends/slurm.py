"""SLURM through submitit's SlurmExecutor: one sbatch per array, sacct for states (docs/slurm.md).

Every value that reaches the sbatch script is checked for control characters here (again:
profiles are checked when loaded) — a newline would end an `#SBATCH` line and the rest would
run as a command. Cluster limits come from `scontrol show config` (MaxArraySize, MaxJobCount)
and `sacctmgr` (the user's association and QOS: MaxSubmitJobs, MaxJobs).
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from alignkit.submit import journal
from alignkit.backends import sacct
from alignkit.backends import register
from alignkit.backends.base import (_CONTROL, AttemptState, Backend, Group, Key, Limits, Poll, SubmitContext, check_text,
                                    setup_lines, watchdog_s)
from alignkit.contract.errors import UserError

MAX_NUM_TIMEOUT = 3  # requeues after hitting the time limit before a job counts as TIMEOUT
# sacct's pending reasons for a dependency, as the neutral `AttemptState.waiting`
WAITING = {"Dependency": "inputs", "DependencyNeverSatisfied": "never"}
FRESH_S = 300.0  # an attempt this young and missing from sacct is taken as PENDING (accounting lag)
SBATCH_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")  # an sbatch long option, without the leading --


def slurm_answers(timeout_s: float = 10.0) -> bool:
    """True when a SLURM controller answers `scontrol ping` (submitit only checks for srun)."""
    if shutil.which("scontrol") is None or shutil.which("sbatch") is None:
        return False
    try:
        proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout_s)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return proc.returncode == 0 and "UP" in proc.stdout


def python_command(plan) -> str:
    """The interpreter the job runs: the profile's `python:` or the `python3` that the setup
    lines (venv activation, module loads) put first on PATH — never this machine's path."""
    return shlex.quote(plan.profile.python) if plan.profile.python else "python3"


# ------------------------------------------------------------------- dependencies ----
def task_id(array_id: str, index: int | None) -> str:
    """SLURM's id of one array task (`123_4`), or of a plain job (`123`)."""
    return array_id if index is None else f"{array_id}_{index}"


def sbatch_dependency(group: Group) -> str | None:
    """The neutral job graph launch wired, in sbatch's grammar (docs/slurm.md): `aftercorr:<array>`
    when element i waits on element i of one array; else `afterok:` on every task the elements
    wait on, an array named whole when all of it is needed. One sbatch gives every element of an
    array the same dependency: the union; `_narrow_dependencies` narrows it per element."""
    if group.elementwise:
        return f"aftercorr:{group.elementwise}"
    if not group.after:
        return None
    return "afterok:" + ":".join(a if idx is None else ":".join(task_id(a, i) for i in idx) for a, idx in group.after)


# ---------------------------------------------------------------------- sbatch text ----
def _check_values(plan, group: Group, code: Path, folder: Path, extra: dict[str, Any]) -> None:
    prof = plan.profile
    src = str(prof.path or f"profile {prof.name}")
    spec = str(plan.spec_path)
    check_text(plan.sweep, f"{spec}: name")
    check_text(str(plan.output_dir), f"{spec}: output_dir")
    check_text(str(folder), f"{spec}: output_dir")
    check_text(str(code), f"{spec}: output_dir")
    for key in ("partition", "account", "qos", "constraint"):  # the spec's and profile's, merged per stage
        check_text(getattr(group.resources, key), f"{spec}: resources.{key} ({group.stage})")
    for key in ("partition", "account", "qos", "constraint", "python"):
        check_text(getattr(prof, key), f"{src}: {key}")
    for key, value in extra.items():
        if not SBATCH_KEY.match(str(key)):
            raise UserError(f"{src}: sbatch.{key}: an sbatch option name may only hold letters, digits and '-'")
        check_text(value if isinstance(value, str) else str(value), f"{src}: sbatch.{key}")


def slurm_parameters(plan, group: Group, code: Path, hold: bool, folder: Path | None = None) -> dict[str, Any]:
    """Native SlurmExecutor parameters (submitit renders them into the sbatch script)."""
    r = group.resources
    prof = plan.profile
    ntasks = r.gpus if (group.stage == "train" and r.gpus > 1) else 1
    params: dict[str, Any] = {
        "job_name": group.name, "time": int(r.time_min), "nodes": int(r.nodes),
        "ntasks_per_node": ntasks, "cpus_per_task": max(1, r.cpus // ntasks),
        "mem": f"{int(r.mem_gb)}GB", "signal_delay_s": int(prof.signal_delay_s),
        "array_parallelism": int(r.array_parallelism), "setup": setup_lines(plan, code),
        "comment": f"alignkit:{plan.sweep}:{group.token}",
    }
    if r.gpus:
        params["gpus_per_node"] = int(r.gpus)
    for key in ("partition", "account", "qos", "constraint"):  # per stage: profile < its defaults < spec
        value = getattr(r, key) or getattr(prof, key)
        if value:
            params[key] = value
    extra: dict[str, Any] = {str(k): v for k, v in prof.sbatch.items()}
    _check_values(plan, group, code, folder or code, extra)
    if dependency := sbatch_dependency(group):
        extra["dependency"] = dependency
        extra["kill-on-invalid-dep"] = "no"  # we cancel them ourselves and show them BLOCKED
    if hold:
        extra["hold"] = True
    if extra:
        params["additional_parameters"] = extra
    return params


def sbatch_script(plan, group: Group, code: Path, folder: Path, hold: bool) -> str:
    """The exact script submitit writes for this group (without needing srun on PATH)."""
    from submitit.slurm.slurm import _make_sbatch_string
    command = " ".join([python_command(plan), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    params = slurm_parameters(plan, group, code, hold, folder)
    return _make_sbatch_string(command=command, folder=folder,
                               map_count=len(group.jobs) if len(group.jobs) > 1 else None, **params)


# --------------------------------------------------------------------------- limits ----
def _run(cmd: list[str], timeout: float = 30.0) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def parse_config(text: str) -> dict[str, str]:
    """`scontrol show config` lines `Key = value` → {Key: value}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def _int_or_none(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def cluster_limits(config: dict[str, str], assoc: str, qos: str, count: Callable[[bool, str | None], int],
                   want_qos: str | None) -> Limits:
    """Limits from `scontrol show config`, `sacctmgr -nP show assoc` (User|Account|QOS|DefaultQOS|
    MaxSubmit|MaxJobs rows), `sacctmgr -nP show qos` (Name|MaxSubmitPU|MaxJobsPU|GrpSubmit|GrpJobs
    rows), and `count(mine, qos)`: the jobs queued now (array tasks one each), this user's or
    everyone's, in one QOS or all. Association and QOS limits count only where
    AccountingStorageEnforce has `limits` (otherwise SLURM ignores them too)."""
    notes = []
    max_array = _int_or_none(config.get("MaxArraySize"))
    caps: list[int] = []
    running: list[int] = []
    max_jobs = _int_or_none(config.get("MaxJobCount"))
    if max_jobs:
        n_all = count(False, None)
        caps.append(max(0, max_jobs - n_all))
        notes.append(f"MaxJobCount={max_jobs} ({n_all} jobs queued on the cluster)")
    if max_array:
        notes.append(f"MaxArraySize={max_array}")
    if "limits" in config.get("AccountingStorageEnforce", ""):
        default_qos = None
        for line in assoc.splitlines():
            cols = line.split("|")
            if len(cols) < 6:
                continue
            default_qos = default_qos or cols[3] or None
            if (n := _int_or_none(cols[4])) is not None:
                mine = count(True, None)
                caps.append(max(0, n - mine))
                notes.append(f"association {cols[1]}: MaxSubmitJobs={n} ({mine} of your jobs queued)")
            if (n := _int_or_none(cols[5])) is not None:
                running.append(n)
                notes.append(f"association {cols[1]}: MaxJobs={n}")
        name = want_qos or default_qos or "normal"
        for line in qos.splitlines():
            cols = line.split("|")
            if len(cols) < 5 or cols[0] != name:
                continue
            for col, what, mine_only in ((1, "MaxSubmitJobsPerUser", True), (3, "GrpSubmitJobs", False)):
                if (n := _int_or_none(cols[col])) is not None:
                    used = count(mine_only, name)
                    caps.append(max(0, n - used))
                    notes.append(f"QOS {name}: {what}={n} ({used} queued in it)")
            for col, what in ((2, "MaxJobsPerUser"), (4, "GrpJobs")):
                if (n := _int_or_none(cols[col])) is not None:
                    running.append(n)
                    notes.append(f"QOS {name}: {what}={n}")
    return Limits(max_array_size=max_array, max_queued=min(caps) if caps else None,
                  max_running=min(running) if running else None, notes=tuple(notes))


def _queued(user: str | None, qos: str | None) -> int:
    """Jobs in the queue now, one per array task (squeue -r)."""
    cmd = ["squeue", "-h", "-r", "-o", "%i"] + (["-u", user] if user else []) + (["-q", qos] if qos else [])
    return len(_run(cmd).split())


# ------------------------------------------------------------------------- backend -----
@register
class SlurmBackend(Backend):
    name = "slurm"
    script_suffix = ".sbatch"

    def check_profile(self, profile, problems) -> None:
        """The profile's `sbatch:` options: long option names, one line each, no `false`."""
        from alignkit.contract.schema import join
        for key, value in profile.sbatch.items():
            where = join("sbatch", key)
            if not SBATCH_KEY.match(key):
                problems.add(where, "an sbatch option name may only hold letters, digits and '-'")
            elif isinstance(value, str) and _CONTROL.search(value):
                problems.add(where, f"contains a control character ({_CONTROL.search(value).group()!r}): "
                                    f"refused, it would end a line of the sbatch script")
            elif value is False:
                problems.add(where, "false is not an sbatch value (leave the option out)")

    def unreachable(self) -> str | None:
        return None if slurm_answers() else "no SLURM controller answers `scontrol ping` here"

    def dry_run_limits(self, plan) -> Limits:
        return self.limits(plan) if slurm_answers() else Limits()

    def check(self, plan) -> None:
        if not slurm_answers():
            raise UserError(f"--executor slurm: no SLURM controller answers `scontrol ping`; nothing queued "
                            f"(the {len(plan.jobs)} jobs never run on this machine unless you ask for "
                            f"--executor local)")

    def limits(self, plan) -> Limits:
        user = os.environ.get("USER") or getpass.getuser()
        config = parse_config(_run(["scontrol", "show", "config"]))
        where = [f"user={user}"] + ([f"account={plan.profile.account}"] if plan.profile.account else [])
        assoc = _run(["sacctmgr", "-nP", "show", "assoc", "where", *where,
                      "format=User,Account,QOS,DefaultQOS,MaxSubmit,MaxJobs"])
        qos = _run(["sacctmgr", "-nP", "show", "qos", "format=Name,MaxSubmitPU,MaxJobsPU,GrpSubmit,GrpJobs"])
        return cluster_limits(config, assoc, qos, lambda mine, q: _queued(user if mine else None, q),
                              plan.profile.qos)

    def script(self, ctx: SubmitContext, group: Group, folder: Path) -> str:
        return sbatch_script(ctx.plan, group, ctx.code, folder, ctx.hold)

    def dependency(self, group: Group) -> str | None:
        return sbatch_dependency(group)

    def reconcile(self, sd) -> list[str]:
        """Settle intents left by a killed submit: find their arrays by job name (squeue/sacct),
        journal them as `recovered`, or as `abandoned` when sbatch never queued anything."""
        jr = journal.load(sd)
        if not jr.pending_intents:
            return []
        names = [r["name"] for r in jr.pending_intents]
        found: dict[str, list[str]] = {}
        for _ in range(6):  # a just-queued array reaches sacct within seconds; squeue has it at once
            found = sacct.query_by_name(names)
            if all(found.get(n) for n in names):
                break
            time.sleep(1.0)
        recovered = []
        for r in jr.pending_intents:
            ids = found.get(r["name"]) or []
            if not ids:
                journal.append(sd, {"type": "abandoned", "token": r["token"]})
                continue
            arr = ids[0]
            jobs = r["jobs"]
            idx = {j: (i if len(jobs) > 1 else None) for i, j in enumerate(jobs)}
            journal.append(sd, {"type": "recovered", "token": r["token"], "stage": r["stage"], "name": r["name"],
                                "executor": "slurm", "array_job_id": arr, "jobs": idx, "waits_on": {},
                                "hold": False, "folder": str(self.folder(sd))})
            recovered.append(arr)
        return recovered

    def queue(self, ctx: SubmitContext, groups: list[Group]) -> int:
        """One sbatch per group, in order; placeholders resolve to the ids sbatch gave. All or
        nothing: a failing sbatch cancels the arrays this call queued."""
        import submitit

        from alignkit.contract import entry

        StageRunner = entry.runner().StageRunner  # noqa: N806 - the class submitit pickles by reference

        sd, plan = ctx.sd, ctx.plan
        folder = self.folder(sd)
        ids: dict[str, str] = {}  # placeholder -> array id
        done: list[Group] = []
        calls = 0
        try:
            for g in groups:
                g.resolve(ids)
                params = slurm_parameters(plan, g, ctx.code, ctx.hold, folder)
                ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_NUM_TIMEOUT,
                                            python=python_command(plan))
                ex.update_parameters(**params)
                journal.append(sd, {"type": "intent", "token": g.token, "stage": g.stage, "name": g.name,
                                    "jobs": [j.id for j in g.jobs]})
                calls += 1
                with ex.batch():
                    sjobs = [ex.submit(StageRunner(watchdog_s(plan)), str(sd.job(j.id))) for j in g.jobs]
                g.array_job_id = sjobs[0].job_id.split("_")[0]
                idx = {j.id: (int(s.job_id.split("_")[1]) if "_" in s.job_id else None)
                       for j, s in zip(g.jobs, sjobs, strict=True)}
                done.append(g)
                if g.placeholder:
                    ids[g.placeholder] = g.array_job_id
                _narrow_dependencies(g, idx)
                journal.append(sd, _submission_record(g, idx, ctx.hold, ctx.code, folder))
        except Exception as exc:  # roll back: nothing of this call stays queued
            queued = [g.array_job_id for g in done if g.array_job_id]
            if queued:
                subprocess.run(["scancel", *queued], capture_output=True, timeout=60)
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            journal.append(sd, {"type": "rollback", "tokens": [g.token for g in groups], "array_job_ids": queued,
                                "reason": reason})
            raise UserError(f"sbatch failed ({reason}); cancelled the {len(queued)} array(s) this submit had "
                            f"queued: {', '.join(queued) or 'none'}") from exc
        return calls

    def poll(self, sd, jr, attempts) -> Poll:
        return _SacctPoll(jr, [a for a in attempts if a.executor == self.name])

    def accounting(self, attempts) -> tuple[dict[Key, AttemptState], str]:
        """One sacct call for the arrays of `attempts`; accounting is optional, so a missing or
        failing sacct is a reason, never an error."""
        keys = {a.key for a in attempts if a.array_job_id}
        if not keys:
            return {}, "no SLURM submissions in the journal"
        if not sacct.available():
            return {}, "sacct not found on this machine"
        try:
            records = sacct.query({k[0] for k in keys})
        except Exception as exc:  # SacctError and anything else
            return {}, f"sacct failed: {exc}"
        return {k: AttemptState(r.state, elapsed_s=r.elapsed_s) for k in keys if (r := records.get(k))}, "sacct"

    def kill(self, attempts) -> list[str]:
        ids = [a.sched_id for a in attempts if a.sched_id]
        if ids:
            proc = subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise UserError(f"scancel failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
        return ids

    def rewire(self, att, waits_on) -> bool:
        """`scontrol update` one pending task's dependency (it is split out of its array)."""
        if not att.sched_id:
            return False
        dep = "afterok:" + ":".join(task_id(a, i) for a, i in waits_on) if waits_on else ""
        try:
            proc = subprocess.run(["scontrol", "update", f"JobId={att.sched_id}", f"Dependency={dep}"],
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0

    def release(self, sd, attempts) -> list[str]:
        ids = [a.sched_id for a in attempts if a.sched_id]
        if ids:
            # scontrol takes a comma-separated list; whole arrays are released task by task
            proc = subprocess.run(["scontrol", "release", ",".join(ids)], capture_output=True, text=True,
                                  timeout=120)
            if proc.returncode != 0 and "already" not in proc.stderr:
                raise UserError(f"scontrol release failed: {proc.stderr.strip() or proc.returncode}")
            journal.append(sd, {"type": "release", "sched_ids": ids, "tokens": []})
        return ids


def _narrow_dependencies(g: Group, idx: dict[str, int | None]) -> None:
    """One sbatch gives every element of an array the same dependency: the union of what its
    elements wait on (a merge array waits on every input of every merge). That is safe but too
    broad: one failed input would block every merge. Narrow each element to its own inputs with
    `scontrol update` (a pending array task can be updated on its own); until then the union
    holds it, so no element can start early."""
    if g.elementwise or not g.after or len(g.jobs) < 2:
        return
    own = {j.id: sorted(set(map(tuple, g.waits_on.get(j.id, []))), key=_order) for j in g.jobs}
    if len({tuple(v) for v in own.values()}) == 1:
        return  # every element waits on the same jobs: the union is exact
    for job in g.jobs:
        deps = ":".join(task_id(a, i) for a, i in own[job.id])
        target = f"{g.array_job_id}_{idx[job.id]}" if idx[job.id] is not None else g.array_job_id
        proc = subprocess.run(["scontrol", "update", f"JobId={target}", f"Dependency=afterok:{deps}"],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode:
            raise RuntimeError(f"scontrol update JobId={target} Dependency=afterok:{deps}: "
                               f"{(proc.stderr or proc.stdout).strip()}")


def _order(key: tuple[str, int | None]) -> tuple[str, int]:
    return (key[0], -1 if key[1] is None else key[1])


def _submission_record(g: Group, idx: dict[str, int | None], hold: bool, code: Path,
                       folder: Path) -> dict[str, Any]:
    return {"type": "submission", "token": g.token, "stage": g.stage, "name": g.name, "executor": "slurm",
            "array_job_id": g.array_job_id, "jobs": idx, "dependency": sbatch_dependency(g),
            "waits_on": {k: [list(w) for w in v] for k, v in g.waits_on.items()}, "hold": hold,
            "code": str(code), "folder": str(folder), "resources": g.resources.to_json()}


# --------------------------------------------------------------------------- states ----
def _held(att, jr) -> bool:
    return att.hold and att.sched_id not in jr.released and att.array_job_id not in jr.released


def slurm_state(att, rec: sacct.Record | None, jr) -> tuple[str, str | None]:
    """One attempt's state from its sacct row and the journal (status applies `blocked` records
    for every backend, before this)."""
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
    if not rec.exact and att.sched_id in jr.released and att.key not in jr.cancelled:
        return "PENDING", "released (accounting lags)"
    if state == "COMPLETED":  # a job that succeeded wrote DONE before exiting (checked by the caller)
        return "FAILED", "ended without writing DONE"
    if state == "PENDING":
        if rec.reason in ("JobHeldUser", "JobHeldAdmin") or (rec.reason is None and _held(att, jr)):
            return "PENDING", "held (alignkit release)"  # sacct fills Reason in a while later
        return "PENDING", rec.reason  # DependencyNeverSatisfied: BLOCKED, decided in refresh
    return state, None


class _SacctPoll(Poll):
    """One sacct call for every array of the sweep, started at once, read in `result`."""

    def __init__(self, jr, attempts):
        self.jr, self.attempts = jr, attempts
        self.pending: sacct.Pending | None = None
        self.error: str | None = None
        try:
            self.pending = sacct.Pending({a.array_job_id for a in attempts if a.array_job_id})
        except sacct.SacctError as exc:
            self.error = str(exc)

    def result(self) -> tuple[dict[Key, AttemptState], list[str]]:
        recs: dict[Key, sacct.Record] = {}
        if self.pending is not None and self.error is None:
            try:
                recs = self.pending.result()
            except sacct.SacctError as exc:
                self.error = str(exc)
        if self.error:
            self.ok = False
            return ({a.key: AttemptState("UNKNOWN", "sacct unavailable") for a in self.attempts},
                    [f"{self.error}: states come from files on disk only"])
        out = {}
        for a in self.attempts:
            rec = recs.get(a.key)  # a task's row only: sacct may briefly show a raw array id for *some* task
            st, why = slurm_state(a, rec, self.jr)
            out[a.key] = AttemptState(st, why, rec.elapsed_s if rec else None, rec.node if rec else None,
                                      rec.restarts if rec else 0, rec.exit_code if rec else None,
                                      WAITING.get(why or "") if st == "PENDING" else None)
        return out, []
