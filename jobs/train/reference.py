"""Shared reference log-probs: one pass per study and key (alignkit/contract/reference.py), reused by every
DPO run that reads the same base and pairs. docs/training.md "Shared reference log-probs".

The pass is stored under <sweep>/reference/<key>/ in SHARDS files per split, `<split>.<shard>.json`
= {"rows": {row_hash: [chosen, rejected]}}: a row (a tokenized pair, hashed by its prompt/chosen/
rejected ids) belongs to shard int(hash, 16) % SHARDS. Keyed by content, so a run whose seed orders
the rows differently, or whose `limit` keeps another subset, finds its rows; rows a shard lacks are
computed by the run itself (counted in train_metrics.json).

Concurrency (array tasks of one study start together; any may be preempted or resubmitted):
* the sharers split the pass instead of waiting idle on one computer: each job walks the shards
  (from an offset of its own), computes every shard nobody has claimed, then waits only for the
  shards others are still computing. Five concurrent seeds each compute about a fifth;
* a shard is claimed by creating `<split>.<shard>.lock` with O_CREAT|O_EXCL (atomic on local file
  systems and on NFSv3+, unlike flock); the holder refreshes its mtime every HEARTBEAT_S;
* a shard file is written once, complete: to a temporary name in the same folder, then os.replace;
  a reader sees all of it or nothing, and a resubmitted job reads what is there;
* a holder killed without cleanup (SIGKILL, node failure) leaves a lock whose mtime stops moving:
  after STALE_S a waiter renames it away (os.rename: one waiter wins) and computes the shard;
* a holder that fails with an exception removes its lock, so a waiter takes the shard over at once.
Within a shard the rows are batched in hash order, so the values, to the last bit, do not depend on
which run computed them.
"""

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from alignkit.contract.fsio import atomic_write_json
from alignkit.contract.reference import REFERENCE_DIR

SHARDS = 16
HEARTBEAT_S = 30.0
STALE_S = 180.0  # 6 missed heartbeats: a slow shared file system is not a dead holder; a killed one costs the waiters 3 min
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
        self.shards_computed_here = 0
        self.shards_total = 0
        self.waited_s = 0.0

    # ---- the store ------------------------------------------------------------------------------
    def table(self, split: str, hashes: list[str], compute) -> dict[str, list[float]]:
        """hash -> [chosen, rejected] for every hash: read, or computed (shard by shard, shared with
        the other sharers) and published. `compute(hashes)` returns the values of those rows in order."""
        self.dir.mkdir(parents=True, exist_ok=True)
        shards: dict[int, list[str]] = {}
        for h in sorted(set(hashes)):
            shards.setdefault(int(h, 16) % SHARDS, []).append(h)
        start = int(hashlib.sha256(self.job_dir.name.encode()).hexdigest()[:8], 16) % SHARDS  # sharers start apart
        order = sorted(shards, key=lambda k: (k - start) % SHARDS)
        rows: dict[str, list[float]] = {}
        waiting = 0.0
        while order:
            pending = []
            for k in order:
                got = self._shard(split, k, shards[k], compute)
                if got is None:
                    pending.append(k)  # another job is computing it
                else:
                    rows.update(got)
            if pending:
                t = time.time()
                time.sleep(self.poll_s)
                waiting += time.time() - t
            order = pending
        self.waited_s += waiting
        self.status = "computed" if self.shards_computed_here else "reused"
        self.shards_total = len(shards)
        return rows

    def _shard(self, split: str, k: int, todo: list[str], compute) -> dict[str, list[float]] | None:
        """Shard k's values for `todo`: read, or computed here; None while another job holds it."""
        path, lock = self.dir / f"{split}.{k:02d}.json", self.dir / f"{split}.{k:02d}.lock"
        if path.is_file():
            rows = json.loads(path.read_text())["rows"]
            missing = [h for h in todo if h not in rows]
            if missing:  # another subset of the same pairs (a `limit`): this run's rows only
                rows.update(zip(missing, compute(missing), strict=True))
                self.rows_computed_here += len(missing)
            return rows
        if not self._acquire(lock):
            return None
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(lock, stop), daemon=True)
        beat.start()
        try:
            if path.is_file():  # published between our check and our claim
                return json.loads(path.read_text())["rows"]
            rows = dict(zip(todo, compute(todo), strict=True))
            tmp = self.dir / f".{split}.{k:02d}.{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps({"key": self.key, "split": split, "shard": k,
                                       "computed_by": self.job_dir.name, "rows": rows}))
            os.replace(tmp, path)
            self.shards_computed_here += 1
            self.rows_computed_here += len(todo)
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
        if prior.get("key") == self.key and prior.get("status") == "computed":
            self.status = "computed"
            self.shards_computed_here = max(self.shards_computed_here, prior.get("shards_computed_here", 0))
            self.rows_computed_here = max(self.rows_computed_here, prior.get("rows_computed_here", 0))
        rec = {"status": self.status, "key": self.key, "path": f"{REFERENCE_DIR}/{self.key}",
               "shards_computed_here": self.shards_computed_here, "shards": self.shards_total,
               "rows_computed_here": self.rows_computed_here, "waited_s": round(self.waited_s, 1)}
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
