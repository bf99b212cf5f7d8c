"""`alignkit collect --prune`: free disk space a finished study no longer needs.

Two kinds of files go, and only in train jobs that finished (DONE), because a job that may
still resume needs them:
  * optimizer/scheduler/RNG states and DeepSpeed ZeRO shards (resume state, often 2-3x the
    adapter's size), wherever they are in the job's directory;
  * intermediate checkpoints `checkpoints/step-N` that no eval job of the manifest lists
    (an eval that lists a step keeps it, done or not, so it can be rerun).
Final adapters, merged models, results and logs are never touched. Dry run unless `yes`.
Nothing outside the sweep directory either: symbolic links are never followed (docs/collect.md).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from alignkit.collect.index import _STEP_DIR, dir_bytes
from alignkit.collect.study import Study
from alignkit.contract.fsio import is_stale_temp, temp_name
from alignkit.submit.sweepdir import contained
from alignkit.contract import paths

OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin", "optimizer.safetensors", "scheduler.pt", "scaler.pt",
                   "rng_state.pth", "rng_state_*.pth", "*optim_states.pt")
# DeepSpeed ZeRO shards; `.resume/` (jobs/train/checkpoints.py: the Trainer's own resume checkpoints,
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
            # a fraction of training (num_train_epochs) uses the step the train job made of it
            fractions = study.jobs[target].fraction_steps if target in study.jobs else {}
            used.setdefault(target, set()).update(str(fractions.get(str(c), c))
                                                  for c in job.config.get("checkpoints") or [])
    return used


def _real_dir(path: str | os.PathLike) -> bool:
    """A directory itself, not a symbolic link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def candidates(study: Study, skipped: list[str] | None = None) -> list[Candidate]:
    """What --prune would delete. Nothing behind a symbolic link: a job directory, checkpoint or state
    that is a link (possibly out of the sweep directory) is listed in `skipped`, never followed."""
    used = _used_steps(study)
    out: list[Candidate] = []
    skipped = [] if skipped is None else skipped
    for job in study.of_stage("train"):
        if job.state != "done" or not os.path.lexists(job.dir):
            continue
        if not contained(job.dir, study.root) or not _real_dir(job.dir):
            skipped.append(f"{job.dir}: a symbolic link (or not a directory); not followed")
            continue
        dropped: set[str] = set()
        ck = job.dir / paths.CHECKPOINTS
        if os.path.islink(ck):
            skipped.append(f"{ck}: a symbolic link; not followed")
        elif _real_dir(ck):
            for e in os.scandir(ck):
                m = _STEP_DIR.match(e.name)
                if m and e.is_symlink():
                    skipped.append(f"{e.path}: a symbolic link; not followed")
                elif e.is_dir(follow_symlinks=False) and m and m.group(1) not in used.get(job.id, set()):
                    dropped.add(e.path)
                    out.append(Candidate(e.path, dir_bytes(Path(e.path)), "intermediate checkpoint no eval uses"))
        for root, dirs, files in os.walk(job.dir):  # never descends into a linked directory
            if any(root == d or root.startswith(d + os.sep) for d in dropped):
                dirs[:] = []
                continue
            for d in list(dirs):
                path = os.path.join(root, d)
                if os.path.islink(path) or path in dropped:
                    dirs.remove(d)
                elif any(fnmatch.fnmatch(d, p) for p in OPTIMIZER_DIRS):
                    out.append(Candidate(path, dir_bytes(Path(path)), "optimizer/resume state"))
                    dirs.remove(d)
                elif is_stale_temp(root, d):
                    out.append(Candidate(path, dir_bytes(Path(path)), "left by a killed writer or prune"))
                    dirs.remove(d)
            for f in files:
                path = os.path.join(root, f)
                if os.path.islink(path):
                    continue
                if any(fnmatch.fnmatch(f, p) for p in OPTIMIZER_FILES):
                    out.append(Candidate(path, os.lstat(path).st_size, "optimizer/scheduler state"))
                elif is_stale_temp(root, f):
                    out.append(Candidate(path, os.lstat(path).st_size, "left by a killed writer"))
    return sorted(out, key=lambda c: c.path)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _remove_contained(root: Path, path: str) -> None:
    """Delete `path` (file or tree) inside `root`, walking there by directory descriptors opened with
    O_NOFOLLOW, so a component swapped for a symbolic link since the listing fails (ELOOP/ENOTDIR)
    instead of leading out of the sweep directory. A directory is first renamed to a temporary name
    (atomic: a checkpoint is there whole or gone), then removed with shutil.rmtree, which does not
    follow links either."""
    rel = os.path.relpath(os.path.abspath(path), root)
    parts = rel.split(os.sep)
    if rel.startswith(os.pardir) or os.path.isabs(rel) or any(p in ("", ".", "..") for p in parts):
        raise OSError(errno.EXDEV, "outside the sweep directory; refused", path)
    fds = [os.open(root, _DIR_FLAGS)]
    try:
        for part in parts[:-1]:
            fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
        last, fd = parts[-1], fds[-1]
        st = os.stat(last, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise OSError(errno.ELOOP, "a symbolic link; not followed", path)
        if stat.S_ISDIR(st.st_mode):
            trash = temp_name(last, "prune")
            os.rename(last, trash, src_dir_fd=fd, dst_dir_fd=fd)
            shutil.rmtree(trash, dir_fd=fd)
        else:
            os.unlink(last, dir_fd=fd)
    finally:
        for fd in reversed(fds):
            os.close(fd)


def apply(cands: list[Candidate], root: Path) -> tuple[int, list[str], list[tuple[str, OSError]]]:
    """Delete the candidates; returns (bytes freed, paths removed, [(path, error)] not removed)."""
    freed, removed, failed = 0, [], []
    for c in cands:
        try:
            _remove_contained(root, c.path)
        except FileNotFoundError:
            continue
        except OSError as exc:  # name the candidate, not the descriptor-relative name the call saw
            failed.append((c.path, OSError(exc.errno, exc.strerror, c.path)))
            continue
        freed += c.bytes
        removed.append(c.path)
    return freed, removed, failed


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
