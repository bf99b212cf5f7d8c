"""Where a safety benchmark's data file is: a local file, a local folder holding it, or a hub dataset.

Compute nodes are offline, so a hub dataset must already be in the Hugging Face cache
(`alignkit prefetch` puts it there); the lookup never touches the network by itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jobs.errors import JobFailure


def resolve(source: str | None, filename: str, where: str, revision: str | None = None) -> Path:
    """`source` is a file, a folder containing `filename` (at any depth named by `filename`), or a hub dataset id."""
    if not source:
        raise JobFailure(f"{where}.source: missing")
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / filename).is_file():
            return path / filename
        raise JobFailure(f"{where}.source: {path} has no {filename}")
    if path.is_absolute() or source.startswith("."):
        raise JobFailure(f"{where}.source: {source} does not exist")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source, filename, repo_type="dataset", revision=revision))
    except Exception as exc:  # offline cache miss, unknown repo, ...
        raise JobFailure(f"{where}.source: cannot find {filename} of hub dataset {source} "
                         f"(run `alignkit prefetch` on a node with internet): {type(exc).__name__}") from None


def read_json(path: Path, where: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise JobFailure(f"{where}: {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


def read_jsonl(path: Path, where: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JobFailure(f"{where}: {path} line {lineno} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise JobFailure(f"{where}: {path} line {lineno} is not a JSON object")
            rows.append(row)
    return rows
