"""Shared reference log-probs: one pass per study and key (alignkit/reference.py), reused by every
DPO run that reads the same base and pairs. docs/training.md "Shared reference log-probs".

The pass is stored as <sweep>/reference/<key>/<split>.json: {"rows": {row_hash: [chosen, rejected]}}
keyed by the content of each tokenized pair (sha256 of its prompt/chosen/rejected ids), so a run
whose seed orders the rows differently, or whose `limit` keeps another subset, finds its rows by
content; rows the file lacks are computed by the run itself (counted in train_metrics.json).

Concurrency (array tasks of one study start together; any may be preempted or resubmitted):
* the file is written once, complete: to a temporary name in the same folder, then os.replace;
  a reader sees all of it or nothing;
* one job computes: it creates `<split>.lock` with O_CREAT|O_EXCL (atomic on local file systems and
  on NFSv3+, unlike flock) and refreshes its mtime every HEARTBEAT_S while computing; the others poll
  for the file;
* a holder killed without cleanup (SIGKILL, node failure) leaves a lock whose mtime stops moving:
  after STALE_S a waiter renames it away (os.rename: one waiter wins) and computes itself;
* a holder that fails with an exception removes its lock, so the next waiter takes over at once.
The pass is computed in a canonical order (rows sorted by hash) so its batches, hence its values to
the last bit, do not depend on which run computed it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from alignkit.fsio import atomic_write_json
from alignkit.reference import REFERENCE_DIR

HEARTBEAT_S = 30.0
STALE_S = 600.0  # 20 missed heartbeats: a slow shared file system is not a dead holder
POLL_S = 5.0
MARKER = "reference.json"  # in the job dir: what this job's reference was (kept across attempts)


def row_hash(example: dict) -> str:
    ids = [list(map(int, example[c])) for c in ("prompt_ids", "chosen_ids", "rejected_ids")]
    return hashlib.sha256(json.dumps(ids, separators=(",", ":")).encode()).hexdigest()[:24]


class SharedReference:
    """One run's view of its study's reference pass; `status` ends as computed, reused or inline."""

    def __init__(self, job_dir: Path, key: str, *, poll_s: float = POLL_S, stale_s: float = STALE_S,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.job_dir = Path(job_dir)
        self.key = key
        self.dir = self.job_dir.parent.parent / REFERENCE_DIR / key  # <sweep>/jobs/<id> -> <sweep>/reference/<key>
        self.poll_s, self.stale_s, self.heartbeat_s = poll_s, stale_s, heartbeat_s
        self.status: str | None = None
        self.rows_computed_here = 0
        self.waited_s = 0.0

    # ---- the store ------------------------------------------------------------------------------
    def table(self, split: str, hashes: list[str], compute) -> dict[str, list[float]]:
        """hash -> [chosen, rejected] for every hash: read, or computed once and published.
        `compute(missing_hashes)` returns the values for those rows (in the order given)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path, lock = self.dir / f"{split}.json", self.dir / f"{split}.lock"
        t0 = time.time()
        while True:
            if path.is_file():
                rows = json.loads(path.read_text())["rows"]
                missing = sorted({h for h in hashes if h not in rows})
                if missing:  # another subset of the same pairs (a `limit`): this run's rows only
                    rows.update(zip(missing, compute(missing), strict=True))
                    self.rows_computed_here += len(missing)
                self.status = self.status or "reused"
                self.waited_s += time.time() - t0
                return rows
            if self._acquire(lock):
                break
            time.sleep(self.poll_s)
        self.waited_s += time.time() - t0
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(lock, stop), daemon=True)
        beat.start()
        try:
            todo = sorted(set(hashes))
            rows = dict(zip(todo, compute(todo), strict=True))
            tmp = self.dir / f".{split}.{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps({"key": self.key, "split": split, "computed_by": self.job_dir.name,
                                       "rows": rows}))
            os.replace(tmp, path)
            self.status, self.rows_computed_here = "computed", len(todo)
            return rows
        finally:
            stop.set()
            beat.join()
            lock.unlink(missing_ok=True)

    def _acquire(self, lock: Path) -> bool:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                return False  # released between the two calls: try again at once next round
            if age > self.stale_s:  # its holder died without removing it: take it over
                try:
                    os.rename(lock, lock.with_name(f"{lock.name}.stale-{uuid.uuid4().hex[:8]}"))
                except FileNotFoundError:
                    pass  # another waiter broke it first
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"job": self.job_dir.name, "host": socket.gethostname(), "pid": os.getpid(),
                       "slurm_job_id": os.environ.get("SLURM_JOB_ID")}, f)
        return True

    def _heartbeat(self, lock: Path, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                os.utime(lock)
            except FileNotFoundError:
                return

    # ---- the job's record -----------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """What train_metrics.json says; a resumed attempt keeps "computed" from its first attempt."""
        marker = self.job_dir / MARKER
        prior = json.loads(marker.read_text()) if marker.is_file() else {}
        status = "computed" if prior.get("status") == "computed" and prior.get("key") == self.key else self.status
        rec = {"status": status, "key": self.key, "path": f"{REFERENCE_DIR}/{self.key}",
               "rows_computed_here": max(self.rows_computed_here, prior.get("rows_computed_here", 0))
               if status == "computed" else self.rows_computed_here,
               "waited_s": round(self.waited_s, 1)}
        atomic_write_json(marker, rec)
        return rec


_ACTIVE: list[SharedReference] = []  # set around the trainer's construction (TRL precomputes in __init__)


class active:
    """`with active(shared): make the trainer` routes its reference precompute through `shared`."""

    def __init__(self, shared: SharedReference | None) -> None:
        self.shared = shared

    def __enter__(self) -> None:
        if self.shared is not None:
            # TRL hashes every weight of the model (trl.trainer.utils.hash_module) only to name its
            # own dataset cache, which the shared pass replaces: seconds per GB on a 7B base
            from trl.trainer import dpo_trainer

            self._hash = dpo_trainer.hash_module
            dpo_trainer.hash_module = lambda module: f"shared-reference-{self.shared.key}"
            _ACTIVE.append(self.shared)

    def __exit__(self, *exc) -> None:
        if self.shared is not None:
            from trl.trainer import dpo_trainer

            dpo_trainer.hash_module = self._hash
            _ACTIVE.remove(self.shared)


def current() -> SharedReference | None:
    return _ACTIVE[-1] if _ACTIVE else None


def precompute(trainer: Any, shared: SharedReference, dataset: Any, name: str, batch_size: int) -> Any:
    """`dataset` with `ref_chosen_logps`/`ref_rejected_logps` columns from the shared pass (TRL's
    `_precompute_ref_logps` loop, dpo_trainer.py: same collator, `compute_ref_log_probs`, batch)."""
    import torch
    from torch.utils.data import DataLoader

    hashes = [row_hash(ex) for ex in dataset]
    first = {}
    for i, h in enumerate(hashes):
        first.setdefault(h, i)

    def compute(todo: list[str]) -> list[list[float]]:
        subset = dataset.select([first[h] for h in todo])
        loader = trainer.accelerator.prepare(DataLoader(subset, batch_size=batch_size, shuffle=False,
                                                        collate_fn=trainer.data_collator))
        model = trainer.ref_model or trainer.model
        out: list[list[float]] = []
        for batch in loader:
            chosen, rejected = trainer.compute_ref_log_probs(model, batch)
            out += [[float(c), float(r)] for c, r in zip(chosen.float().cpu(), rejected.float().cpu(), strict=True)]
        return out

    rows = shared.table(name, hashes, compute)
    vals = torch.tensor([rows[h] for h in hashes], dtype=torch.float32)
    dataset = dataset.add_column("ref_chosen_logps", vals[:, 0].tolist())
    return dataset.add_column("ref_rejected_logps", vals[:, 1].tolist())
