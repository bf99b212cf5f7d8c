"""Queue a compiled plan: the sweep directory, then arrays with their dependencies wired.

Pure plan → arrays → dependency wiring lives here, as a scheduler-neutral job graph (`Group`:
each element's inputs, their union, and "element i after element i of that array"); the executor
behind it is a `Backend` (alignkit/backends/), found by name, which words that graph in its own
grammar (SLURM's in backends/slurm.py). Never one job per run: every job of a (stage, resource
class, upstream array) group goes into one array, throttled by `array_parallelism`, split into
chunks of at most the cluster's MaxArraySize. Dependencies (docs/slurm.md):
  * a group whose every element waits on exactly one job, and those jobs are, in order, all the
    elements of one array queued by this call, waits element-wise on it (eval i after train i);
    split into chunks, chunk k of the group waits element-wise on chunk k of that array: both
    split at the same indices, so element i of a chunk still waits on element i of its upstream;
  * otherwise the group waits on the specific tasks it needs (merges on all their inputs);
    dependencies that already COMPLETED are dropped.
Idempotent: jobs whose latest attempt is completed, pending or running are skipped, so when a
study is larger than what the user may queue at once (QOS/association MaxSubmitJobs,
MaxJobCount, or --max-queued) submit queues a dependency-closed first wave and the next submit
picks up the rest. All or nothing: a backend that fails part-way cancels the arrays this call
queued. A lock file refuses a concurrent submit; an `intent` journal record before each queueing
call plus a unique job name lets the next submit find arrays queued by a submit that was killed
before it could journal them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from alignkit import backends
from alignkit.backends.base import Group, Limits, SubmitContext
from alignkit.plan.model import Job, Plan
from alignkit.contract.errors import UserError
from alignkit.contract.stages import STAGES
from alignkit.contract.serial import write_config
from alignkit.contract.fsio import atomic_dir, atomic_write_json, atomic_write_text, copy_tree
from alignkit.sweepdir import SweepDir

# states in which a job is left alone by a re-submit
KEEP_STATES = frozenset({"COMPLETED", "PENDING", "HELD", "RUNNING", "REQUEUED", "PREEMPTED", "COMPLETING",
                         "CONFIGURING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED"})


@dataclass
class SubmitResult:
    sweep_dir: Path
    executor: str
    groups: list[Group]
    skipped: dict[str, int]                      # state -> count of jobs left alone
    calls: int                                   # calls the backend made to its scheduler
    dry_run: bool
    hold: bool
    warnings: list[str] = field(default_factory=list)
    scripts: list[Path] = field(default_factory=list)
    deferred: int = 0                            # jobs left for the next submit (waves)
    limits: Limits = field(default_factory=Limits)


def choose_executor(plan: Plan, requested: str | None) -> tuple[str, list[str]]:
    """The executor asked for (or the profile's), if it can run here: never a fallback —
    `--executor slurm` without a controller is refused, not run on this machine."""
    name = requested or plan.profile.executor
    backends.get(name).check(plan)
    return name, []


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
    axes = list(plan.axes)
    if sd.manifest.exists():
        known = {j["id"] for j in jobs}
        old = sd.load_manifest()
        jobs += [j for j in old.get("jobs", []) if j["id"] not in known]
        # earlier jobs keep their columns: a dotted axis an earlier plan swept stays listed
        axes += [a for a in old.get("axes") or () if isinstance(a, str) and a not in axes]
    atomic_write_json(sd.manifest, {
        "format": 1, "sweep": plan.sweep, "spec_path": str(plan.spec_path), "spec_text": plan.spec_text,
        "profile": plan.profile.name, "axes": axes, "select": plan.select, "jobs": jobs,
        **_awaiting(plan)})
    for job in plan.jobs:
        cfg = sd.job(job.id) / "config.json"
        if not cfg.exists():
            write_config(cfg, job.config)  # the one serialiser (alignkit/contract/serial.py)
    return jobs


def _awaiting(plan: Plan) -> dict[str, Any]:
    """`awaiting_selection`: the jobs of `runs: selected` benchmarks not decided yet (plan/selected.py),
    for status; absent when the study has none (other manifests stay as they were)."""
    if not plan.awaiting:
        return {}
    from alignkit.plan.selected import manifest_entries
    return {"awaiting_selection": manifest_entries(plan)}


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

    for k in sorted(keys, key=lambda k: (STAGES[k[0]].submit_order if k[0] in STAGES else 9, repr(k[1]))):
        visit(k)
    return [(k[0], k[1], sorted(groups[k], key=lambda j: (j.name, j.id))) for k in ordered]


def _wire(group: Group, queued: dict[str, tuple[str, int | None]], arrays: dict[str, list[str]],
          pending: dict[str, tuple[str, int | None]]) -> None:
    """Set group.waits_on, after and elementwise; may reorder group.jobs to align with an array.

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
                group.elementwise = arr  # element i after element i of that array
                group.waits_on = {j.id: [queued[deps[j.id][0]]] for j in group.jobs}
                group.after = [(arr, None)]
                return
    where = {**pending, **queued}
    group.waits_on = {j.id: [where[d] for d in deps[j.id]] for j in group.jobs}
    group.after = _after(group.waits_on, {a: len(ids) for a, ids in arrays.items()})


def _after(waits_on: dict[str, list[tuple[str, int | None]]], sizes: dict[str, int]) -> list[tuple[str, list[int] | None]]:
    """The union of what the elements wait on, array by array in order: an array of this call
    (`sizes`) whole when every element of it is needed, a plain job whole, else its tasks."""
    needed = sorted({w for ws in waits_on.values() for w in ws}, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    out: list[tuple[str, list[int] | None]] = []
    for arr in sorted({a for a, _ in needed}):
        idxs = [i for a, i in needed if a == arr]
        whole = arr in sizes and len(idxs) == sizes[arr]
        out.append((arr, None) if (whole or idxs == [None]) else (arr, [i for i in idxs if i is not None]))
    return out


def _new_group(plan: Plan, stage: str, jobs: list[Job]) -> Group:
    token = uuid.uuid4().hex[:10]
    return Group(stage=stage, jobs=jobs, token=token, name=f"ak.{plan.sweep}.{stage}.{token}")


def _make_groups(plan: Plan, todo: list[Job]) -> list[Group]:
    return [_new_group(plan, stage, jobs) for stage, _key, jobs in _topo_groups(todo, plan.array_keys())]


def take_wave(plan: Plan, todo: list[Job], budget: int | None) -> tuple[list[Job], list[Job]]:
    """At most `budget` jobs of `todo`, closed under dependencies (a job goes only with every
    input it still needs), in array order; and the rest, for the next submit."""
    if budget is None or budget >= len(todo):
        return list(todo), []
    order = [j for _s, _k, jobs in _topo_groups(todo, plan.array_keys()) for j in jobs]
    waiting = {j.id for j in todo}
    taken: set[str] = set()
    for j in order:
        if len(taken) >= budget:
            break
        if all(d not in waiting or d in taken for d in j.depends_on):
            taken.add(j.id)
    return [j for j in todo if j.id in taken], [j for j in todo if j.id not in taken]


def layout(plan: Plan, todo: list[Job], pending: dict[str, tuple[str, int | None]],
           max_array: int | None = None) -> list[Group]:
    """The arrays to queue, in order: groups wired against each other, then each split into
    chunks of at most `max_array` elements. Arrays of this call are named by placeholder
    (`${ARRAY_n}`: the n-th array) until a backend queues them."""
    logical = _make_groups(plan, todo)
    queued: dict[str, tuple[str, int | None]] = {}
    arrays: dict[str, list[str]] = {}
    for n, g in enumerate(logical):
        _wire(g, queued, arrays, pending)
        for i, j in enumerate(g.jobs):
            queued[j.id] = (f"L{n}", i if len(g.jobs) > 1 else None)
        arrays[f"L{n}"] = [j.id for j in g.jobs]
    size = max(1, max_array) if max_array else None
    out: list[Group] = []
    where: dict[tuple[str, int | None], tuple[str, int | None]] = {}  # logical task -> chunk task
    sizes: dict[str, int] = {}
    for n, g in enumerate(logical):
        corr = g.elementwise
        step = size or len(g.jobs)
        for start in range(0, len(g.jobs), step):
            part = g.jobs[start:start + step]
            c = g if step >= len(g.jobs) else _new_group(plan, g.stage, part)
            c.placeholder = f"${{ARRAY_{len(out)}}}"
            for i in range(len(part)):
                where[(f"L{n}", start + i if len(g.jobs) > 1 else None)] = (c.placeholder, i if len(part) > 1 else None)
            sizes[c.placeholder] = len(part)
            c.waits_on = {j.id: [where.get(w, w) for w in g.waits_on.get(j.id, [])] for j in part
                          if g.waits_on.get(j.id)}
            if corr and len(part) > 1:
                # same split points as the upstream array: element i here after element i there
                c.elementwise = where[(corr, start)][0]
                c.after = [(c.elementwise, None)]
            else:
                c.elementwise = None
                c.after = _after(c.waits_on, sizes)
            out.append(c)
    return out


def queue_limit(limits: Limits, max_queued: int | None) -> int | None:
    caps = [c for c in (limits.max_queued, max_queued) if c is not None]
    return min(caps) if caps else None


def describe_limits(plan: Plan, limits: Limits, max_queued: int | None = None) -> list[str]:
    """What the cluster's limits mean for this plan (printed by `plan` and `submit`)."""
    lines = []
    if limits.notes:
        lines.append("cluster limits: " + "; ".join(limits.notes))
    groups = _make_groups(plan, list(plan.jobs))
    if limits.max_array_size:
        split = [g for g in groups if len(g.jobs) > limits.max_array_size]
        if split:
            n = sum(-(-len(g.jobs) // limits.max_array_size) for g in groups)
            lines.append(f"  {len(split)} group(s) exceed MaxArraySize={limits.max_array_size}: "
                         f"{n} arrays, each queued on its own (element-wise dependencies kept across them)")
    cap = queue_limit(limits, max_queued)
    if cap is not None and cap < len(plan.jobs):
        lines.append(f"  {len(plan.jobs)} jobs exceed the {cap} you may queue now: submit queues them in "
                     f"waves of at most {cap} (run `alignkit submit` again as jobs finish; "
                     f"it picks up the rest)")
    return lines



# ------------------------------------------------------------------------- submit ------
def submit(plan: Plan, executor: str | None = None, dry_run: bool = False, hold: bool = False,
           max_queued: int | None = None) -> SubmitResult:
    """Create/update the sweep directory and queue every job that is not done or queued (at
    most what the cluster and `max_queued` allow at once: the rest waits for the next submit)."""
    from alignkit import status as status_mod  # status imports launch's constants

    sd = SweepDir.of(plan.output_dir)
    name = executor or plan.profile.executor
    backend = backends.get(name)
    if dry_run:
        return _dry_run(plan, sd, name, hold)
    check_scripts(plan, sd, name, hold)
    backend.check(plan)
    with submit_lock(sd):
        sd.remove_stale_temps()  # a killed earlier submit's (fsio: dead writers' only)
        write_sweep(plan, sd)
        code = snapshot_code(sd)
        backend.reconcile(sd)
        study = status_mod.refresh(sd)  # also cancels blocked jobs
        states = {s.id: s for s in study.jobs}
        todo, skipped = [], {}
        for job in plan.jobs:
            st = states[job.id].state if job.id in states else "UNSUBMITTED"
            if st in KEEP_STATES:
                skipped[st] = skipped.get(st, 0) + 1
            else:
                todo.append(job)
        pending = {jid: s.attempt.key for jid, s in states.items()
                   if s.state in KEEP_STATES - {"COMPLETED"} and s.attempt is not None}
        limits = backend.limits(plan) if todo else Limits()
        now, later = take_wave(plan, todo, queue_limit(limits, max_queued))
        groups = layout(plan, now, pending, limits.max_array_size)
        calls = backend.queue(SubmitContext(plan, sd, code, hold, pending), groups)
        notes = []
        if later:
            notes.append(f"{len(later)} of {len(todo)} job(s) wait for a later `alignkit submit`: at most "
                         f"{queue_limit(limits, max_queued)} may be queued now ("
                         + ("; ".join(limits.notes) if limits.max_queued is not None else f"--max-queued {max_queued}")
                         + ")")
        return SubmitResult(sd.root, name, groups if now else [], skipped, calls, False, hold, notes,
                            deferred=len(later), limits=limits)


def check_scripts(plan: Plan, sd: SweepDir, executor: str, hold: bool) -> None:
    """Render one script per array before anything is written: a value that may not reach a
    script (a control character, a bad sbatch key) is refused with nothing half-written."""
    ctx = SubmitContext(plan, sd, sd.code, hold, {})
    backend = backends.get(executor)
    for g in _make_groups(plan, list(plan.jobs)):
        backend.script(ctx, g, backend.folder(sd))


# ----------------------------------------------------------------------- dry run -------
def _dry_run(plan: Plan, sd: SweepDir, executor: str, hold: bool) -> SubmitResult:
    """Write the scripts a submit would queue (nothing queued, no job state read): the
    executor's own, or those of the backend it previews with (local: the sbatch scripts)."""
    backend = backends.get(executor)
    writer = backends.get(backend.previews_with or executor)
    check_scripts(plan, sd, writer.name, hold)
    limits = backend.dry_run_limits(plan)
    groups = layout(plan, list(plan.jobs), {}, limits.max_array_size)
    out = sd.root / "dry-run"
    ctx = SubmitContext(plan, sd, sd.code, hold, {})
    scripts = []
    for n, g in enumerate(groups):
        g.script = writer.script(ctx, g, writer.folder(sd))
        path = out / f"{n:02d}-{g.stage}{writer.script_suffix}"
        atomic_write_text(path, g.script)
        scripts.append(path)
    atomic_write_json(out / "jobs.json", [{"script": str(p), "stage": g.stage, "jobs": [j.id for j in g.jobs],
                                           "names": [j.name for j in g.jobs], "dependency": writer.dependency(g)}
                                          for p, g in zip(scripts, groups, strict=True)])
    return SubmitResult(sd.root, executor, groups, {}, 0, True, hold, [], scripts, limits=limits)
