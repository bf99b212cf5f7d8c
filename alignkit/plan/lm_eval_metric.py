"""An lm_eval benchmark's `metric` against the metrics its task's YAML declares, read without running
or importing lm-eval: the eval job would otherwise fail after the model is loaded (lm_eval_run.py
`_metric_key`: "no metric ..."). lm-eval 0.4.13 names a task's metrics in `metric_list: - metric: NAME`
and a group's in `aggregate_metric_list: - metric: NAME` (docs/task_guide.md; tasks/ifeval/ifeval.yaml
lines 15-27); a task may take them from the file its `include:` names. The task's YAML is looked for
in `include_path` and in the installed lm_eval/tasks/<task>/ folder only (never the whole tree, ~10 s);
a task not found there, or whose YAML names no metric, is left unchecked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alignkit.contract.lm_eval_needs import tasks_root
from alignkit.contract.schema import Problems, join

_MAX_FILES = 2000
_MAX_BYTES = 1 << 20
_METRIC = re.compile(r"^\s*-?\s*metric:\s*['\"]?([A-Za-z0-9_.\-]+)", re.MULTILINE)
_INCLUDE = re.compile(r"^include:\s*['\"]?([^'\"#\n]+?)['\"]?\s*$", re.MULTILINE)


def _names(text: str, task: str) -> bool:
    pattern = rf"^(?:task|group):\s*['\"]?{re.escape(task)}['\"]?\s*$"
    return re.search(pattern, text, re.MULTILINE) is not None


def _read(path: Path) -> str:
    try:
        if not path.is_file() or path.stat().st_size > _MAX_BYTES:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _metrics_of(path: Path, depth: int = 0) -> set[str]:
    text = _read(path)
    found = set(_METRIC.findall(text))
    inc = _INCLUDE.search(text)
    if not found and inc and depth < 3:
        found = _metrics_of(path.parent / inc.group(1).strip(), depth + 1)
    return found


def task_metrics(task: str, include_path: str | None) -> set[str] | None:
    """The metrics a task's YAML declares; None where its YAML is not found (unchecked)."""
    folders = [Path(include_path)] if include_path else []
    root = tasks_root()
    if root is not None and re.fullmatch(r"[A-Za-z0-9_.\-]+", task):
        folders.append(root / task)
    seen = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.yaml")):
            seen += 1
            if seen > _MAX_FILES:
                return None
            if _names(_read(path), task):
                return _metrics_of(path) or None
    return None


def check(spec: Any, problems: Problems) -> None:
    for name, b in spec.evals.benchmarks.items():
        if b.type != "lm_eval" or not b.task or not b.metric:
            continue
        include = str((spec.path.parent / b.include_path).resolve()) if b.include_path else None
        known = task_metrics(b.task, include)
        metric = b.metric.split(",")[0]
        if known is not None and metric not in known:
            problems.add(join(join(join("evals", "benchmarks"), name), "metric"),
                         f"task '{b.task}' does not produce '{metric}' (its YAML declares: "
                         f"{', '.join(sorted(known))})")
