"""What an lm-eval task needs beyond lm-eval itself: the Python packages of lm-eval's extra for the
task's folder, and data files that the task's code reads (nltk's punkt_tab for IFEval).

lm-eval declares per-task requirements as extras of its own package, named after the task folder
(lm-eval 0.4.13 pyproject.toml: `ifeval = ["langdetect", "immutabledict", "nltk>=3.9.1"]`), and the
task's code imports them when its config is loaded (tasks/_yaml_loader.py resolves `!function`).
A task whose YAML lies under a folder named like an extra (tasks/ifeval/, tasks/leaderboard/ifeval/)
needs that extra. Found without importing lm-eval or indexing its task tree (~10 s): the folders are
listed and only the YAML files of extra-named folders are read, so `alignkit plan` can afford it.
torch-free, no import outside the standard library except `packaging` (lm-eval's own dependency)
and nltk (only to look its data up, only for a task that needs nltk data).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path

# Data a task's code loads at run time, per lm-eval extra. IFEval: lm_eval/tasks/ifeval/instructions_util.py
# (0.4.13) lines 36-52 look up "tokenizers/punkt_tab" at import and call nltk.download when it is absent
# (which an offline compute node cannot), and line 1689 loads the Punkt sentence tokenizer from it.
EXTRA_DATA: dict[str, tuple[str, ...]] = {"ifeval": ("tokenizers/punkt_tab",)}

_NAME = re.compile(r"^(?:task|group|tag):[ \t]*\[?([^\]#\n]+)", re.MULTILINE)


def tasks_root() -> Path | None:
    """lm_eval/tasks of the installed lm-eval, found without importing it; None when not installed."""
    try:
        spec = importlib.util.find_spec("lm_eval")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "tasks"
    return root if root.is_dir() else None


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


@functools.lru_cache(maxsize=1)
def extras() -> dict[str, tuple[str, ...]]:
    """lm-eval's extras: {normalised name: its requirement strings}, from the installed metadata."""
    try:
        requires = importlib.metadata.requires("lm_eval") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    out: dict[str, list[str]] = {}
    for line in requires:
        req, _, marker = line.partition(";")
        found = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if found:
            out.setdefault(_norm(found.group(1)), []).append(req.strip())
    return {k: tuple(v) for k, v in out.items()}


@functools.lru_cache(maxsize=1)
def task_extras() -> dict[str, frozenset[str]]:
    """Task, group and tag names declared in lm-eval's YAML under extra-named folders -> those extras."""
    root, names = tasks_root(), extras()
    if root is None or not names:
        return {}
    out: dict[str, set[str]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        owning = {_norm(p) for p in Path(folder).relative_to(root).parts} & set(names)
        if not owning:
            continue
        for file in files:
            if not file.endswith((".yaml", ".yml")):
                continue
            try:
                text = (Path(folder) / file).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for found in _NAME.finditer(text):
                for name in found.group(1).split(","):
                    name = name.strip().strip("'\"")
                    if name and not name.startswith("!"):
                        out.setdefault(name, set()).update(owning)
    return {k: frozenset(v) for k, v in out.items()}


def _missing_packages(requirements: tuple[str, ...]) -> list[str]:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # lm-eval depends on packaging; without it only presence is checked
        Requirement = None
    missing = []
    for text in requirements:
        name = re.split(r"[\s\[<>=!~;]", text, maxsplit=1)[0]
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if Requirement is not None and not Requirement(text).specifier.contains(have, prereleases=True):
            missing.append(f"{text} (have {have})")
    return missing


def _missing_data(resources: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(nltk resources not found, nltk's search path) for the resources a task loads."""
    if not resources:
        return [], []
    try:
        import nltk
    except ImportError:  # reported as the missing nltk package already
        return [], []
    missing = []
    for resource in resources:
        try:
            nltk.data.find(resource)
        except LookupError:
            missing.append(resource)
    return missing, list(nltk.data.path)


def task_needs(task: str, packages: bool = True, data: bool = True) -> str | None:
    """What lm-eval task `task` needs that this Python environment lacks (its packages, its data or
    both), in one phrase, or None."""
    wanted = sorted(task_extras().get(task, ()))
    if not wanted:
        return None
    absent: list[str] = []
    files: list[str] = []
    search: list[str] = []
    for extra in wanted:
        if packages:
            absent += [p for p in _missing_packages(extras()[extra]) if p not in absent]
        if data:
            found, path = _missing_data(EXTRA_DATA.get(extra, ()))
            files += found
            search = search or path
    parts = []
    if absent:
        parts.append(f"Python packages {', '.join(absent)} (lm-eval extra {'/'.join(wanted)}: "
                     f"pip install 'alignkit[eval]')")
    if files:
        parts.append(f"nltk data {', '.join(files)} (not under any of nltk's data paths "
                     f"{os.pathsep.join(search)}; `alignkit prefetch` downloads it, or on a machine with internet "
                     f"`python -m nltk.downloader -d DIR {' '.join(Path(d).name for d in files)}` and set NLTK_DATA=DIR)")
    return " and ".join(parts) or None


def benchmark_needs(benchmarks: dict[str, dict], packages: bool = True, data: bool = True) -> list[tuple[str, str]]:
    """(benchmark, "task T needs ...") per lm_eval benchmark (built-in task) that needs what this
    environment lacks."""
    lines = []
    for name, spec in benchmarks.items():
        if not isinstance(spec, dict) or spec.get("type") != "lm_eval" or not spec.get("task"):
            continue
        if spec.get("include_path"):  # a local task folder: its own code, checked when its config is read
            continue
        need = task_needs(str(spec["task"]), packages, data)
        if need:
            lines.append((name, f"task {spec['task']} needs {need}"))
    return lines


def nltk_resources(task: str) -> list[str]:
    """The nltk resources lm-eval task `task` loads (for prefetch to download)."""
    return [r for extra in sorted(task_extras().get(task, ())) for r in EXTRA_DATA.get(extra, ())]
