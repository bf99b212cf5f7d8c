"""What `training.num_train_epochs` comes to, as far as plan can tell before the job runs.

The train job counts its steps from the rows it keeps after filtering (jobs/train/stage.py
`epoch_steps`, recorded as `max_steps` in train_metrics.json). Plan can read a local data file's rows
but not the job's filters (rows its template and max_length drop, the identical pairs), so what it
shows is an upper bound: the same rule (alignkit/contract/sections.py `steps_for_epochs`) on the file's
rows, `limit` applied. Hub sources, folders and mixtures are left to the job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.contract.datafile import file_problem
from alignkit.contract.sections import steps_for_epochs

_MAX_BYTES = 256 << 20  # a file this large is not read at plan (the job counts it)


def count_rows(path: Path) -> int | None:
    """Rows of a local .jsonl, .json (a list) or .parquet file; None where plan does not read it."""
    try:
        if file_problem(path) is not None or path.stat().st_size > _MAX_BYTES:
            return None
        if path.suffix == ".jsonl":
            with open(path, "rb") as fh:
                return sum(1 for line in fh if line.strip())
        if path.suffix == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            return len(rows) if isinstance(rows, list) else None
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError, ImportError):
        return None
    return None


def _data_file(dataset: Any, preference: tuple[str, ...]) -> Path | None:
    if len(preference) != 1:
        return None  # a mixture's rows depend on how the job mixes them
    where = (dataset.files or {}).get(preference[0], dataset.source)
    path = Path(where)
    return path if path.is_absolute() and path.is_file() else None


def run_steps(config: Any) -> tuple[int, int] | None:
    """(rows, at most this many steps) for a train job's typed config with num_train_epochs, from its
    local data file; None where plan cannot read the rows."""
    epochs = config.training.num_train_epochs
    path = _data_file(config.dataset, config.preference)
    if epochs is None or path is None:
        return None
    rows = count_rows(path)
    if rows is None:
        return None
    limit = config.dataset.limit
    rows = min(rows, limit) if limit else rows
    return rows, steps_for_epochs(rows, config.method.batch_size, epochs)


def epoch_lines(jobs: list[Any]) -> list[str]:
    """The text plan's lines for runs that train by epochs."""
    by_epochs = [j for j in jobs if j.stage == "train" and j.config.training.num_train_epochs is not None]
    if not by_epochs:
        return []
    out, unknown, cache = [], 0, {}
    for j in by_epochs:
        c = j.config
        key = (id(c.dataset), c.preference, id(c.training), c.method.batch_size)  # runs share these objects
        if key not in cache:
            cache[key] = run_steps(c)
        got = cache[key]
        if got is None:
            unknown += 1
        elif len(out) < 5:
            out.append(f"    {j.name}: {c.training.num_train_epochs:g} epochs of {got[0]:,} rows at "
                       f"batch {c.method.batch_size} = at most {got[1]:,} steps")
    head = ("  num_train_epochs: steps counted by each train job from the rows it keeps after filtering "
            "(train_metrics.json max_steps); from the local files, before the job's filters:")
    more = len(by_epochs) - unknown - len(out)
    tail = [f"    ... and {more} more"] if more > 0 else []
    if unknown:
        tail.append(f"    {unknown} run(s) read hub, folder or mixed data: their steps are known when the job runs")
    return [head] + out + tail
