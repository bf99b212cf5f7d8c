"""Read a raw dataset with `datasets.load_dataset`, from a local file, a local folder or the hub.

Hub ids are resolved to their snapshot in the Hugging Face cache first (compute nodes run with
HF_HUB_OFFLINE=1; `alignkit prefetch` fills the cache at the pinned revision), then loaded
from that folder like any local folder, so README configs and data_dir layouts behave as on
the hub. The field checks every format shares live with the formats (alignkit/plugins/formats/).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alignkit.contract.datafile import folder_problem, text_problem
from alignkit.contract.hub import is_local
from jobs.errors import JobFailure

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


def builder_for(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s not in (".gz", ".bz2", ".xz", ".zst")]
    builder = FILE_BUILDERS.get(suffixes[-1] if suffixes else "")
    if builder is None:
        raise JobFailure(f"dataset file {path}: unknown format (expected .json, .jsonl, .parquet, .csv or .arrow, "
                         f"optionally compressed)")
    return builder


def hub_snapshot(dataset: Any, source: str) -> Path:
    """The cached snapshot folder of a hub dataset (downloads only when the hub is online)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, IncompleteSnapshotError, LocalEntryNotFoundError,
                                       OfflineModeIsEnabled)

    from alignkit.contract.hub import dataset_allow_patterns

    revision, name = dataset.revision, dataset.name
    try:
        # the same file patterns as `alignkit prefetch`, so a subset-only download counts as complete
        patterns = dataset_allow_patterns({"subsets": dataset.subsets, "files": dataset.files})
        return Path(snapshot_download(source, repo_type="dataset", revision=revision, allow_patterns=patterns))
    except IncompleteSnapshotError:
        raise JobFailure(f"dataset {name}: {source}@{revision or 'main'} is only partly in the Hugging Face "
                         f"cache (an interrupted download?); run `alignkit prefetch` again") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as exc:
        raise JobFailure(f"dataset {name}: {source}@{revision or 'main'} is not in the Hugging Face cache and "
                         f"the hub cannot be reached ({type(exc).__name__}); run `alignkit prefetch` on "
                         f"the login node") from None


def load_split(dataset: Any, data_dir: str | None, *, split: str, source: str,
               held_out: bool = False) -> tuple[Any, str]:
    """Load one split of `source` (the dataset's, or a preference's own file); return
    (datasets.Dataset, label naming the file or folder for errors)."""
    import datasets

    name = dataset.name
    path = Path(source).expanduser()
    if is_local(source) or os.path.lexists(path):  # bounded checks first: a FIFO, a loop, NULs, non-UTF-8
        bad = text_problem(path) or (folder_problem(path) if path.is_dir() else None)
        if bad:
            raise JobFailure(f"dataset {name}: local source {path}: {bad}")
    if path.is_file() and held_out:  # the file is the training split: it has no other
        raise JobFailure(f"dataset {name}: validation.split {split!r} cannot come from the single file {path} "
                         f"(it is the training split); use validation.fraction")
    if path.is_file():
        # a single file is the split: datasets names it "train" whatever the spec's split is
        label, kwargs = str(path), {"path": builder_for(path), "data_files": str(path), "split": "train"}
    elif path.is_dir():
        label = f"{path / data_dir if data_dir else path} ({split})"
        kwargs = {"path": str(path), "data_dir": data_dir, "split": split}
    elif is_local(source):
        raise JobFailure(f"dataset {name}: local source {source} does not exist")
    else:
        snap = hub_snapshot(dataset, source)
        label = f"{source}@{dataset.revision}{'/' + data_dir if data_dir else ''} ({split})"
        kwargs = {"path": str(snap), "data_dir": data_dir, "split": split}
    try:
        ds = datasets.load_dataset(**kwargs)
    except JobFailure:
        raise
    except Exception as exc:  # pyarrow / datasets errors: keep the first line, which names the row
        first = next((ln for ln in str(exc).strip().splitlines() if ln.strip()), type(exc).__name__)
        cause = exc.__cause__ or exc.__context__
        if cause is not None and str(cause).strip():
            first += " | " + str(cause).strip().splitlines()[0]
        raise JobFailure(f"dataset {name}: cannot read {label}: {first}") from None
    return ds, label
