"""Queue a compiled plan: the sweep directory, then one submitit array per (stage, resource class).

Never one sbatch per run: `executor.batch()` turns every job of a group into one `--array`,
throttled by `array_parallelism`. Dependencies (docs/slurm.md):
  * a group whose every element waits on exactly one job, and those jobs are, in order, all the
    elements of one array queued by this call, gets `aftercorr:<array>` (eval i after train i);
  * otherwise the group waits `afterok` on the specific task ids it needs (merges on all their
    inputs); dependencies that already COMPLETED are dropped.
Idempotent: jobs whose latest attempt is completed, pending or running are skipped. All or
nothing: a failing sbatch cancels the arrays this call queued. A lock file refuses a concurrent
submit; an `intent` journal record before each sbatch plus a unique job name lets the next
submit find arrays queued by a submit that was killed before it could journal them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from alignkit import journal, sacct
from alignkit.compile import Job, Plan
from alignkit.errors import UserError
from alignkit.fsio import atomic_dir, atomic_write_json, atomic_write_text, copy_tree
from alignkit.sweepdir import SweepDir

# states in which a job is left alone by a re-submit
KEEP_STATES = frozenset({"COMPLETED", "PENDING", "RUNNING", "REQUEUED", "PREEMPTED", "COMPLETING",
                         "CONFIGURING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED"})
MAX_NUM_TIMEOUT = 3  # requeues after hitting the time limit before a job counts as TIMEOUT
STAGE_ORDER = {"train": 0, "merge": 1, "eval": 2, "judge": 3}


@dataclass
class Group:
    """One array to queue: jobs of one stage and resource class, in array-index order."""
    stage: str
    jobs: list[Job]
    token: str
    name: str                                    # sbatch --job-name, unique per submission
    dependency: str | None = None
    waits_on: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    array_job_id: str | None = None
    script: str = ""

    @property
    def resources(self):
        return self.jobs[0].resources


@dataclass
class SubmitResult:
    sweep_dir: Path
    executor: str
    groups: list[Group]
    skipped: dict[str, int]                      # state -> count of jobs left alone
    sbatch_calls: int
    dry_run: bool
    hold: bool
    warnings: list[str] = field(default_factory=list)
    scripts: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------------- cluster ----
def slurm_answers(timeout_s: float = 10.0) -> bool:
    """True when a SLURM controller answers `scontrol ping` (submitit only checks for srun)."""
    if shutil.which("scontrol") is None or shutil.which("sbatch") is None:
        return False
    try:
        proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout_s)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return proc.returncode == 0 and "UP" in proc.stdout


def choose_executor(plan: Plan, requested: str | None) -> tuple[str, list[str]]:
    executor = requested or plan.profile.executor
    if executor not in ("slurm", "local"):
        raise UserError(f"--executor: unknown executor '{executor}' (known: slurm, local)")
    if executor == "slurm" and not slurm_answers():
        return "local", [f"no SLURM controller answers `scontrol ping`: running the {len(plan.jobs)} jobs "
                         f"on this machine with the local executor instead"]
    return executor, []


# -------------------------------------------------------------------- sweep directory --
@contextmanager
def submit_lock(sd: SweepDir) -> Iterator[None]:
    sd.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(sd.lock, os.O_RDWR | os.O_CREAT, 0o666)  # & ~umask: a group member may submit too
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(sd.lock).read_text().strip() or "?"
            raise UserError(f"{sd.root}: another `alignkit submit` is running on this sweep "
                            f"(lock {sd.lock} held by pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _source_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _code_digest(root: Path) -> str:
    h = hashlib.sha256()
    for pkg in ("alignkit", "jobs"):
        for p in sorted((root / pkg).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc"):
                h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _git_commit(root: Path) -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    head = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--", "alignkit", "jobs"))
    return f"{head}\ndirty={str(dirty).lower()}\n"


def snapshot_code(sd: SweepDir) -> Path:
    """Copy alignkit/ and jobs/ into the sweep, so editing the checkout changes no queued job.

    The first snapshot is `code/` (docs/contract.md); a later submit with different code gets
    `code/versions/<digest>/` and its jobs run that one; jobs queued earlier keep theirs.
    """
    root = _source_root()
    digest = _code_digest(root)
    target = sd.code
    if (sd.code / "DIGEST").exists() and (sd.code / "DIGEST").read_text().strip() != digest:
        target = sd.code / "versions" / digest
    if (target / "DIGEST").exists():
        return target
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    with atomic_dir(target) if target != sd.code or not sd.code.exists() else _in_place(target) as tmp:
        for pkg in ("alignkit", "jobs"):
            copy_tree(root / pkg, tmp / pkg, ignore=ignore)  # umask modes, not the checkout's
        atomic_write_text(tmp / "COMMIT", _git_commit(root))
        atomic_write_text(tmp / "DIGEST", digest + "\n")
    return target


@contextmanager
def _in_place(path: Path) -> Iterator[Path]:
    # code/ exists without a DIGEST (a snapshot interrupted before its last file): complete it
    yield path


def write_sweep(plan: Plan, sd: SweepDir) -> list[dict[str, Any]]:
    """manifest.json (spec + the union of this plan's jobs and earlier ones) and a job dir each."""
    jobs = [j.to_json() for j in plan.jobs]
    if sd.manifest.exists():
        known = {j["id"] for j in jobs}
        jobs += [j for j in sd.load_manifest().get("jobs", []) if j["id"] not in known]
    atomic_write_json(sd.manifest, {
        "format": 1, "sweep": plan.sweep, "spec_path": str(plan.spec_path), "spec_text": plan.spec_text,
        "profile": plan.profile.name, "jobs": jobs})
    for job in plan.jobs:
        cfg = sd.job(job.id) / "config.json"
        if not cfg.exists():
            atomic_write_json(cfg, job.config)
    return jobs


# --------------------------------------------------------------------------- groups ----
def _topo_groups(todo: list[Job], array_keys: dict[str, tuple]) -> list[tuple[str, tuple, list[Job]]]:
    groups: dict[tuple[str, tuple], list[Job]] = {}
    for job in todo:  # one array per stage, resource class and lineage (Plan.array_keys)
        groups.setdefault((job.stage, array_keys[job.id][1:]), []).append(job)
    keys = list(groups)
    where = {j.id: k for k, js in groups.items() for j in js}
    ordered: list[tuple[str, tuple]] = []
    seen: set[tuple[str, tuple]] = set()

    def visit(k: tuple[str, tuple], path: tuple = ()) -> None:
        if k in seen:
            return
        if k in path:
            raise UserError(f"dependency cycle between arrays {k[0]} and {path[-1][0]}")
        for j in groups[k]:
            for d in j.depends_on:
                if d in where and where[d] != k:
                    visit(where[d], path + (k,))
        seen.add(k)
        ordered.append(k)

    for k in sorted(keys, key=lambda k: (STAGE_ORDER.get(k[0], 9), repr(k[1]))):
        visit(k)
    return [(k[0], k[1], sorted(groups[k], key=lambda j: (j.name, j.id))) for k in ordered]


def _wire(group: Group, queued: dict[str, tuple[str, int | None]], arrays: dict[str, list[str]],
          pending: dict[str, tuple[str, int | None]]) -> None:
    """Set group.dependency and waits_on; may reorder group.jobs to align with an array.

    queued: job id -> (array id, index) of arrays queued by this call (array id may be a
    placeholder in a dry run); arrays: array id -> its job ids in index order; pending: job id
    -> (array id, index) of attempts still pending/running from earlier submits."""
    deps = {j.id: [d for d in j.depends_on if d in queued or d in pending] for j in group.jobs}
    if not any(deps.values()):
        return
    single = all(len(v) == 1 for v in deps.values())
    if single:
        firsts = {v[0] for v in deps.values()}
        arr_ids = {queued[d][0] for d in firsts if d in queued}
        if len(arr_ids) == 1 and all(d in queued for d in firsts):
            arr = arr_ids.pop()
            if sorted(arrays[arr]) == sorted(firsts) and len(firsts) == len(group.jobs) and len(firsts) > 1:
                pos = {jid: i for i, jid in enumerate(arrays[arr])}
                group.jobs.sort(key=lambda j: pos[deps[j.id][0]])
                group.dependency = f"aftercorr:{arr}"
                group.waits_on = {j.id: [queued[deps[j.id][0]]] for j in group.jobs}
                return
    where = {**pending, **queued}
    needed = sorted({where[d] for v in deps.values() for d in v}, key=lambda k: (k[0], k[1] if k[1] is not None else -1))
    parts: list[str] = []
    for arr in sorted({a for a, _ in needed}):
        idxs = [i for a, i in needed if a == arr]
        whole = arr in arrays and len(idxs) == len(arrays[arr])
        parts += [arr] if (whole or idxs == [None]) else [f"{arr}_{i}" for i in idxs]
    group.dependency = "afterok:" + ":".join(parts)
    group.waits_on = {j.id: [where[d] for d in deps[j.id]] for j in group.jobs}


def watchdog_s(plan: Plan) -> float:
    """How long a stage that does not poll `stop` (eval, merge) may run on after the signal
    before it is requeued anyway: well inside the signal delay (docs/preemption.md)."""
    return float(min(30, max(5, plan.profile.signal_delay_s // 4)))


# ---------------------------------------------------------------------- sbatch text ----
def setup_lines(plan: Plan, code: Path) -> list[str]:
    return [f"export PYTHONPATH={shlex.quote(str(code))}${{PYTHONPATH:+:$PYTHONPATH}}",
            *plan.profile.setup]


def slurm_parameters(plan: Plan, group: Group, code: Path, hold: bool) -> dict[str, Any]:
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
    for key in ("partition", "account", "qos", "constraint"):
        value = (r.partition if key == "partition" and r.partition else getattr(prof, key))
        if value:
            params[key] = value
    extra: dict[str, Any] = {str(k): v for k, v in prof.sbatch.items()}
    if group.dependency:
        extra["dependency"] = group.dependency
        extra["kill-on-invalid-dep"] = "no"  # we cancel them ourselves and show them BLOCKED
    if hold:
        extra["hold"] = True
    if extra:
        params["additional_parameters"] = extra
    return params


def sbatch_script(plan: Plan, group: Group, code: Path, folder: Path, hold: bool) -> str:
    """The exact script submitit writes for this group (without needing srun on PATH)."""
    from submitit.slurm.slurm import _make_sbatch_string
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    params = slurm_parameters(plan, group, code, hold)
    return _make_sbatch_string(command=command, folder=folder,
                               map_count=len(group.jobs) if len(group.jobs) > 1 else None, **params)


# ------------------------------------------------------------------------- submit ------
def submit(plan: Plan, executor: str | None = None, dry_run: bool = False, hold: bool = False) -> SubmitResult:
    """Create/update the sweep directory and queue every job that is not done or queued."""
    from alignkit import status as status_mod  # status imports launch's constants

    sd = SweepDir.of(plan.output_dir)
    chosen, notes = choose_executor(plan, executor) if not dry_run else (executor or plan.profile.executor, [])
    for note in notes:
        warnings.warn(note, stacklevel=2)
    if dry_run:
        return _dry_run(plan, sd, chosen, hold, notes)
    with submit_lock(sd):
        sd.remove_stale_temps()  # a killed earlier submit's (fsio: dead writers' only)
        write_sweep(plan, sd)
        code = snapshot_code(sd)
        if chosen == "slurm":
            reconcile(sd)
        study = status_mod.refresh(sd)  # also cancels blocked jobs
        states = {s.id: s for s in study.jobs}
        todo, skipped = [], {}
        for job in plan.jobs:
            st = states[job.id].state
            if st in KEEP_STATES:
                skipped[st] = skipped.get(st, 0) + 1
            else:
                todo.append(job)
        pending = {jid: s.attempt.key for jid, s in states.items()
                   if s.state in KEEP_STATES - {"COMPLETED"} and s.attempt is not None}
        if chosen == "local":
            return _submit_local(plan, sd, code, todo, skipped, hold, notes)
        groups = _make_groups(plan, todo)
        calls = _queue_slurm(plan, sd, code, groups, pending, hold)
        return SubmitResult(sd.root, "slurm", groups, skipped, calls, False, hold, notes)


def _make_groups(plan: Plan, todo: list[Job]) -> list[Group]:
    groups = []
    for stage, _key, jobs in _topo_groups(todo, plan.array_keys()):
        token = uuid.uuid4().hex[:10]
        groups.append(Group(stage=stage, jobs=jobs, token=token, name=f"ak.{plan.sweep}.{stage}.{token}"))
    return groups


def _queue_slurm(plan: Plan, sd: SweepDir, code: Path, groups: list[Group],
                 pending: dict[str, tuple[str, int | None]], hold: bool) -> int:
    import submitit

    from alignkit.runner import StageRunner

    folder = sd.root / "slurm" / "%j"
    queued: dict[str, tuple[str, int | None]] = {}
    arrays: dict[str, list[str]] = {}
    done_groups: list[Group] = []
    calls = 0
    try:
        for g in groups:
            _wire(g, queued, arrays, pending)
            ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_NUM_TIMEOUT)
            ex.update_parameters(**slurm_parameters(plan, g, code, hold))
            journal.append(sd, {"type": "intent", "token": g.token, "stage": g.stage, "name": g.name,
                                "jobs": [j.id for j in g.jobs]})
            calls += 1
            with ex.batch():
                sjobs = [ex.submit(StageRunner(watchdog_s(plan)), str(sd.job(j.id))) for j in g.jobs]
            g.array_job_id = sjobs[0].job_id.split("_")[0]
            idx = {j.id: (int(s.job_id.split("_")[1]) if "_" in s.job_id else None) for j, s in zip(g.jobs, sjobs, strict=True)}
            done_groups.append(g)
            _narrow_dependencies(g, idx)
            journal.append(sd, _submission_record(g, idx, "slurm", hold, code, folder))
            for j in g.jobs:
                queued[j.id] = (g.array_job_id, idx[j.id])
            arrays[g.array_job_id] = [j.id for j in g.jobs]
    except Exception as exc:  # roll back: nothing of this call stays queued
        ids = [g.array_job_id for g in done_groups if g.array_job_id]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=60)
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        journal.append(sd, {"type": "rollback", "tokens": [g.token for g in groups], "array_job_ids": ids,
                            "reason": reason})
        raise UserError(f"sbatch failed ({reason}); cancelled the {len(ids)} array(s) this submit had queued: "
                        f"{', '.join(ids) or 'none'}") from exc
    return calls


def _narrow_dependencies(g: Group, idx: dict[str, int | None]) -> None:
    """One sbatch gives every element of an array the same dependency: the union of what its
    elements wait on (a merge array waits on every input of every merge). That is safe but too
    broad: one failed input would block every merge. Narrow each element to its own inputs with
    `scontrol update` (a pending array task can be updated on its own); until then the union
    holds it, so no element can start early."""
    if not (g.dependency or "").startswith("afterok:") or len(g.jobs) < 2:
        return
    own = {j.id: sorted(set(map(tuple, g.waits_on.get(j.id, [])))) for j in g.jobs}
    if len({tuple(v) for v in own.values()}) == 1:
        return  # every element waits on the same jobs: the union is exact
    for job in g.jobs:
        deps = ":".join(f"{a}_{i}" if i is not None else a for a, i in own[job.id])
        target = f"{g.array_job_id}_{idx[job.id]}" if idx[job.id] is not None else g.array_job_id
        proc = subprocess.run(["scontrol", "update", f"JobId={target}", f"Dependency=afterok:{deps}"],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode:
            raise RuntimeError(f"scontrol update JobId={target} Dependency=afterok:{deps}: "
                               f"{(proc.stderr or proc.stdout).strip()}")


def _submission_record(g: Group, idx: dict[str, int | None], executor: str, hold: bool, code: Path,
                       folder: Path) -> dict[str, Any]:
    return {"type": "submission", "token": g.token, "stage": g.stage, "name": g.name, "executor": executor,
            "array_job_id": g.array_job_id, "jobs": idx, "dependency": g.dependency,
            "waits_on": {k: [list(w) for w in v] for k, v in g.waits_on.items()}, "hold": hold,
            "code": str(code), "folder": str(folder), "resources": g.resources.to_json()}


def reconcile(sd: SweepDir) -> list[str]:
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
                            "hold": False, "folder": str(sd.root / "slurm" / "%j")})
        recovered.append(arr)
    return recovered


# ----------------------------------------------------------------------- dry run -------
def _dry_run(plan: Plan, sd: SweepDir, executor: str, hold: bool, notes: list[str]) -> SubmitResult:
    """Write the sbatch scripts a submit would queue (nothing queued, no state read from SLURM)."""
    groups = _make_groups(plan, list(plan.jobs))
    out = sd.root / "dry-run"
    queued: dict[str, tuple[str, int | None]] = {}
    arrays: dict[str, list[str]] = {}
    code = sd.code
    scripts = []
    for n, g in enumerate(groups):
        _wire(g, queued, arrays, {})
        placeholder = f"${{ARRAY_{n}}}"  # the id sbatch will give this array
        g.script = sbatch_script(plan, g, code, sd.root / "slurm" / "%j", hold)
        path = out / f"{n:02d}-{g.stage}.sbatch"
        atomic_write_text(path, g.script)
        scripts.append(path)
        for i, j in enumerate(g.jobs):
            queued[j.id] = (placeholder, i if len(g.jobs) > 1 else None)
        arrays[placeholder] = [j.id for j in g.jobs]
    atomic_write_json(out / "jobs.json", [{"script": str(p), "stage": g.stage, "jobs": [j.id for j in g.jobs],
                                           "names": [j.name for j in g.jobs], "dependency": g.dependency}
                                          for p, g in zip(scripts, groups, strict=True)])
    return SubmitResult(sd.root, executor, groups, {}, 0, True, hold, notes, scripts)


# -------------------------------------------------------------------------- local ------
def _submit_local(plan: Plan, sd: SweepDir, code: Path, todo: list[Job], skipped: dict[str, int],
                  hold: bool, notes: list[str]) -> SubmitResult:
    """Journal one local submission and start a detached driver that runs it in dependency order."""
    groups = _make_groups(plan, todo)
    if not todo:
        return SubmitResult(sd.root, "local", [], skipped, 0, False, hold, notes)
    token = uuid.uuid4().hex[:10]
    record = {"type": "submission", "token": token, "stage": "*", "name": f"ak.{plan.sweep}.local.{token}",
              "executor": "local", "array_job_id": None, "jobs": {j.id: None for j in todo},
              "waits_on": {j.id: [[d, None] for d in j.depends_on] for j in todo},  # job ids: DONE each
              "hold": hold, "code": str(code), "folder": str(sd.root / "local" / "%j"),
              "max_parallel": plan.profile.max_parallel_local,
              "setup": setup_lines(plan, code), "signal_delay_s": plan.profile.signal_delay_s,
              "watchdog_s": watchdog_s(plan),
              "timeout_min": {j.id: j.resources.time_min for j in todo},
              "gpus": {j.id: j.resources.gpus for j in todo}}
    if hold:
        atomic_write_text(sd.root / "local" / f"HOLD-{token}", "released by `alignkit release`\n")
    journal.append(sd, record)
    start_local_driver(sd, token, code)
    for g in groups:
        g.token = token
    return SubmitResult(sd.root, "local", groups, skipped, 0, False, hold, notes)


def start_local_driver(sd: SweepDir, token: str, code: Path) -> int:
    log_dir = sd.root / "local"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=f"{code}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep))
    with open(log_dir / f"driver-{token}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "alignkit.localrun", str(sd.root), token],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, cwd=str(sd.root))
    atomic_write_text(log_dir / f"driver-{token}.pid", f"{proc.pid}\n")
    return proc.pid
