"""`alignkit collect --prune`: free disk space a finished study no longer needs.

Two kinds of files go, and only in train jobs that finished (DONE), because a job that may
still resume needs them:
  * optimizer/scheduler/RNG states and DeepSpeed ZeRO shards (resume state, often 2-3x the
    adapter's size), wherever they are in the job's directory;
  * intermediate checkpoints `checkpoints/step-N` that no eval job of the manifest lists
    (an eval that lists a step keeps it, done or not, so it can be rerun).
Final adapters, merged models, results and logs are never touched. Dry run unless `yes`.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from alignkit.collect.index import _STEP_DIR, dir_bytes
from alignkit.collect.study import Study

OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin", "optimizer.safetensors", "scheduler.pt", "scaler.pt",
                   "rng_state.pth", "rng_state_*.pth", "*optim_states.pt")
# DeepSpeed ZeRO shards; `.resume/` (jobs/checkpoints.py: the Trainer's own resume checkpoints,
# normally removed when a run completes) if a finished run left one behind.
OPTIMIZER_DIRS = ("global_step*", ".resume")


@dataclass(frozen=True)
class Candidate:
    path: str
    bytes: int
    reason: str


def _used_steps(study: Study) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for job in study.jobs.values():
        if job.stage == "eval":
            target = (job.config.get("target") or {}).get("job")
            used.setdefault(target, set()).update(str(c) for c in job.config.get("checkpoints") or [])
    return used


def candidates(study: Study) -> list[Candidate]:
    used = _used_steps(study)
    out: list[Candidate] = []
    for job in study.of_stage("train"):
        if job.state != "done" or not job.dir.is_dir():
            continue
        dropped: set[str] = set()
        ck = job.dir / "checkpoints"
        if ck.is_dir():
            for e in os.scandir(ck):
                m = _STEP_DIR.match(e.name)
                if e.is_dir() and m and m.group(1) not in used.get(job.id, set()):
                    dropped.add(e.path)
                    out.append(Candidate(e.path, dir_bytes(Path(e.path)), "intermediate checkpoint no eval uses"))
        for root, dirs, files in os.walk(job.dir):
            if any(root == d or root.startswith(d + os.sep) for d in dropped):
                dirs[:] = []
                continue
            for d in list(dirs):
                if any(fnmatch.fnmatch(d, p) for p in OPTIMIZER_DIRS):
                    path = os.path.join(root, d)
                    out.append(Candidate(path, dir_bytes(Path(path)), "optimizer/resume state"))
                    dirs.remove(d)
                elif os.path.join(root, d) in dropped:
                    dirs.remove(d)
            for f in files:
                if any(fnmatch.fnmatch(f, p) for p in OPTIMIZER_FILES):
                    path = os.path.join(root, f)
                    out.append(Candidate(path, os.path.getsize(path), "optimizer/scheduler state"))
    return sorted(out, key=lambda c: c.path)


def apply(cands: list[Candidate]) -> tuple[int, list[str]]:
    """Delete the candidates; returns (bytes freed, paths that could not be removed)."""
    freed, failed = 0, []
    for c in cands:
        try:
            if os.path.isdir(c.path) and not os.path.islink(c.path):
                shutil.rmtree(c.path)
            else:
                os.unlink(c.path)
            freed += c.bytes
        except FileNotFoundError:
            continue
        except OSError as exc:
            failed.append(f"{c.path}: {exc}")
    return freed, failed


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
