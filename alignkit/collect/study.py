"""Read a sweep directory back: the manifest, each job's result files, the journal, accounting.

Everything here is defensive: a study may be half-run, a job may have been killed while a
writer was mid-way (fsio makes that unlikely, but files copied by hand or by an older version
can still be torn), and SLURM may be absent. Unreadable or malformed files become `Problem`s
naming the path; they never stop the collection.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.contract.errors import UserError
from alignkit.contract.fsio import is_stale_temp, remove_stale_temps
from alignkit.submit.sweepdir import SweepDir
from alignkit.contract import paths

# The axes every config carries (canonical order); a manifest without "axes" (written before
# dotted axes existed) is read as sweeping exactly these.
NAMED_AXES = ("model", "dataset", "preference", "method", "peft", "seed")
# A named axis or a dotted path into a run's config (docs/spec.md): it becomes a column name.
_AXIS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")

RESULT_FILES = (paths.TRAIN_METRICS, paths.EVAL, paths.JUDGE, paths.MERGE, paths.ERROR)


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str


@dataclass
class JobRecord:
    id: str
    name: str
    stage: str
    depends_on: list[str]
    config: dict[str, Any]
    resources: dict[str, Any]
    dir: Path
    state: str = "missing"          # done | failed | running | pending | missing
    results: dict[str, Any] = field(default_factory=dict)   # file name -> parsed JSON
    slurm_id: str | None = None
    slurm_state: str | None = None
    elapsed_s: float | None = None  # from the scheduler's accounting (SLURM: sacct, all attempts' last row)
    elapsed_from: str | None = None  # what answered for elapsed_s (the backend's accounting, e.g. "sacct")

    @property
    def axes(self) -> dict[str, Any]:
        return self.config.get("axes") or {}

    @property
    def fraction_steps(self) -> dict[str, int]:
        """A train job's train_metrics.json "fraction_steps" ({"0.5": step}: num_train_epochs with evals
        at fractions of training, docs/training.md "Epochs"); {} for others."""
        got = (self.results.get(paths.TRAIN_METRICS) or {}).get("fraction_steps")
        if not isinstance(got, dict):
            return {}
        return {str(k): v for k, v in got.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}

    @property
    def gpu_hours(self) -> float | None:
        if self.elapsed_s is None:
            return None
        gpus = (self.resources.get("gpus") or 0) * (self.resources.get("nodes") or 1)
        return self.elapsed_s * gpus / 3600.0


@dataclass
class Study:
    root: Path
    name: str
    jobs: dict[str, JobRecord]
    problems: list[Problem]
    accounting: str  # "sacct", or why there is none
    axes: list[str] = field(default_factory=lambda: list(NAMED_AXES))  # manifest "axes": swept, in order
    select: dict[str, Any] | None = None   # manifest "select" as written (collect/select.py checks it)
    manifest_path: str = "manifest.json"
    awaiting: int = 0   # jobs of `runs: selected` benchmarks waiting for the selection (alignkit/plan/selected.py)

    def of_stage(self, stage: str) -> list[JobRecord]:
        return [j for j in self.jobs.values() if j.stage == stage]


def _read_json(path: Path, problems: list[Problem]) -> Any | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        problems.append(Problem(str(path), f"not valid JSON (half-written or corrupt): {exc.msg} "
                                           f"at line {exc.lineno} column {exc.colno}; skipped"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(str(path), f"unreadable: {exc}; skipped"))
    return None


def _shape_ok(name: str, obj: Any) -> str | None:
    """Why a result file's top-level shape is unusable, or None when it is fine."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    if name in (paths.EVAL, paths.JUDGE):
        ck = obj.get("checkpoints")
        if not isinstance(ck, dict):
            return "key 'checkpoints' is missing or not an object"
        for step, benches in ck.items():
            if not isinstance(benches, dict):
                return f"key 'checkpoints.{step}' is not an object"
    return None


def load_study(root: str | os.PathLike, accounting: bool = True) -> Study:
    sd = SweepDir.of(root)
    manifest = sd.load_manifest()  # refuses unsafe job ids and sweep names (UserError)
    sd.remove_stale_temps()  # left by a killed submit
    problems: list[Problem] = []
    jobs: dict[str, JobRecord] = {}
    for i, entry in enumerate(manifest["jobs"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) \
                or not isinstance(entry.get("config"), dict):
            problems.append(Problem(str(sd.manifest), f"jobs[{i}]: no 'id' or 'config'; skipped"))
            continue
        config = entry["config"]
        rec = JobRecord(id=entry["id"], name=str(entry.get("name", entry["id"])),
                        stage=str(entry.get("stage", config.get("stage", "?"))),
                        depends_on=list(entry.get("depends_on") or []), config=config,
                        resources=entry.get("resources") or {}, dir=sd.job(entry["id"]))
        _read_job(rec, problems)
        jobs[rec.id] = rec
    how = _attach_accounting(sd, jobs, problems) if accounting else "not asked (--no-sacct)"
    select = manifest.get("select")
    if select is not None and not isinstance(select, dict):
        raise UserError(f"{sd.manifest}: key 'select': expected an object or null, got {type(select).__name__}")
    waiting = manifest.get("awaiting_selection")
    return Study(sd.root, str(manifest.get("sweep", sd.root.name)), jobs, problems, how,
                 manifest_axes(manifest, str(sd.manifest)), select, str(sd.manifest),
                 len(waiting) if isinstance(waiting, list) else 0)


def manifest_axes(manifest: dict[str, Any], path: str) -> list[str]:
    """The manifest's swept axes (named ones first, then dotted; docs/collect.md), or the six named
    axes for a manifest written before it had "axes". A name that could not be a column is refused."""
    raw = manifest.get("axes")
    if raw is None:
        return list(NAMED_AXES)
    if not isinstance(raw, list):
        raise UserError(f"{path}: key 'axes': expected a list of axis names, got {type(raw).__name__}")
    for i, name in enumerate(raw):
        if not isinstance(name, str) or not _AXIS_NAME.fullmatch(name) or len(name) > 200:
            raise UserError(f"{path}: key 'axes[{i}]': {name!r} is not an axis name (a name or a dotted path)")
    return list(dict.fromkeys(raw))


def _read_job(rec: JobRecord, problems: list[Problem]) -> None:
    try:
        names = {e.name for e in os.scandir(rec.dir)}
    except FileNotFoundError:
        return  # never started: state "missing"
    except OSError as exc:
        problems.append(Problem(str(rec.dir), f"unreadable: {exc}"))
        return
    if any(n.endswith(".tmp") and is_stale_temp(rec.dir, n) for n in names):
        remove_stale_temps(rec.dir)  # best effort: a read-only study stays as it is
    for name in RESULT_FILES:
        if name in names:
            obj = _read_json(rec.dir / name, problems)
            if obj is None:
                continue
            why = _shape_ok(name, obj)
            if why:
                problems.append(Problem(str(rec.dir / name), f"{why}; skipped"))
                continue
            rec.results[name] = obj
    if paths.DONE in names:
        rec.state = "done"
    elif paths.ERROR in names:
        rec.state = "failed"
    elif paths.PROGRESS in names or paths.LOGS in names:
        rec.state = "running"
    else:
        rec.state = "pending"


def _attach_accounting(sd: SweepDir, jobs: dict[str, JobRecord], problems: list[Problem]) -> str:
    """Scheduler ids from the journal; state and elapsed time from each executor's accounting
    (alignkit/backends/: one query per executor, when it keeps accounting and it answers)."""
    try:
        from alignkit import backends
        from alignkit.submit import journal as journal_mod
        journal = journal_mod.load(sd)
    except ImportError:
        return "no journal reader (alignkit.submit.journal missing)"
    except Exception as exc:  # a journal record this reader does not understand must not stop collect
        problems.append(Problem(str(sd.journal), f"journal not understood ({type(exc).__name__}: {exc})"))
        return "journal unreadable"
    by_executor: dict[str, dict[tuple[str, int | None], tuple[Any, JobRecord]]] = {}
    for job_id, rec in jobs.items():
        att = journal.latest(job_id)
        if att is None:
            continue
        rec.slurm_id = att.sched_id or (f"local:{att.local_id}" if att.local_id else None)
        by_executor.setdefault(att.executor, {})[att.key] = (att, rec)
    answers = []
    for name, atts in sorted(by_executor.items()):
        if name not in backends.names():
            continue  # status warns about an unknown executor; collect reads the files only
        got = backends.get(name).accounting([a for a, _ in atts.values()])
        if got is None:
            continue
        states, how = got
        answers.append(how)
        for key, st in states.items():
            rec = atts[key][1]
            rec.slurm_state = st.state
            rec.elapsed_s = float(st.elapsed_s) if st.elapsed_s is not None else None
            rec.elapsed_from = how if st.elapsed_s is not None else None
    return "; ".join(answers) or "no submissions with scheduler accounting in the journal"
