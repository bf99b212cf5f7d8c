"""Paths in a spec: hub ids vs local paths (relative to the spec file), and the places jobs
write into, which are never this checkout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from alignkit.contract.schema import join
from alignkit.contract.datafile import file_problem
from alignkit.spec.model import Spec


# The checkout this code runs from: a sweep directory must never land in (or over) its packages.
CHECKOUT = Path(__file__).resolve().parents[2]  # alignkit/spec/paths.py -> the checkout
CHECKOUT_DIRS = ("alignkit", "jobs", "tests", "slurm", "docs", "requirements", "sweeps", "assets", "bench",
                 ".git", ".venv")


def checkout_problem(value: str, out: Path) -> str | None:
    """A place jobs write into (a sweep, a tracker's store) is never the checkout or its packages."""
    inside = [d for d in CHECKOUT_DIRS if out == CHECKOUT / d or (CHECKOUT / d) in out.parents]
    if inside:
        return f"{value!r} resolves to {out}, inside this checkout's {inside[0]}/ (refused)"
    if out == CHECKOUT or out in CHECKOUT.parents:
        return f"{value!r} resolves to {out}, which holds this checkout (refused)"
    return None


def output_dir_problem(value: str, base: Path) -> str | None:
    """A sweep directory is written into: never the checkout, its packages, or a regular file."""
    try:
        out = (base / os.path.expanduser(value)).resolve()
    except (RuntimeError, OSError):
        return f"{value!r} is a symlink loop"
    bad = checkout_problem(value, out)
    if bad:
        return bad
    if out.exists() and not out.is_dir():
        return f"{value!r} resolves to {out}, which is not a directory"
    return None


# a hub data_dir (a folder in the dataset repo): plain path parts, never '..'
HUB_DATA_DIR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")
# a `files` value with one of these endings is a local file (missing: plan warns, submit refuses)
DATA_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow")
# Fields that hold a hub id or a local path (relative paths are relative to the spec file); a
# mapping field (dataset `files`) holds one per key.
PATH_FIELDS = {"models": ("source",), "datasets": ("source", "files"),
               "evals.benchmarks": ("source", "include_path", "classifier"), "evals.judges": ("source",),
               "targets": ("source",), "methods": ("init_from.adapter",)}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?")
EXPLICIT_LOCAL = ("/", "./", "../", "~")


def resolve_source(spec_dir: Path, source: str) -> str:
    """Local paths become absolute (relative ones are relative to the spec file); hub ids stay."""
    if source.startswith(EXPLICIT_LOCAL):
        return resolved_path(spec_dir / os.path.expanduser(source))
    candidate = spec_dir / source
    if candidate.exists() or candidate.is_symlink():
        return resolved_path(candidate)
    return source


def resolved_path(path: Path) -> str:
    """The absolute path; a symlink loop (which resolve() raises on) stays as written, made absolute,
    for local_path_issues to name."""
    try:
        return str(path.resolve())
    except (RuntimeError, OSError):
        return os.path.abspath(path)


def local_path_issues(spec: Spec) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(errors, missing) as (YAML path, message). An error is a relative path that exists, but
    relative to the current directory or the checkout instead of the spec file's folder: known
    now, not when the job fails. Missing is a local path that exists nowhere yet (data cloned
    before submit, for instance): `plan` warns, `submit` refuses."""
    errors: list[tuple[str, str]] = []
    missing: list[tuple[str, str]] = []
    spec_dir = spec.path.parent
    targets = {join(join("targets", n), "source"): n for n in spec.targets}  # YAML path -> target name
    # YAML path -> (what, folder kind) of each folder that must hold a model or an adapter
    folders = {at: (f"target {n}", spec.targets[n].type) for at, n in targets.items()}
    folders.update({join(join(join("methods", n), "init_from"), "adapter"): (f"method {n}: init_from", "adapter")
                    for n in spec.methods})
    for section, keys in PATH_FIELDS.items():
        entries: Any = spec
        for part in section.split("."):
            entries = getattr(entries, part)
        values = [v for name, entry in entries.items() for v in _path_values(section, name, entry, keys)]
        if section in _DOTTED_PATH_SECTIONS:  # a swept `dataset.source` is a source like any other
            values += [(key, at, v) for key, at, v in _dotted_path_values(spec, _DOTTED_PATH_SECTIONS[section], keys)]
        for key, at, source in values:
            resolved = resolve_source(spec_dir, source)
            explicit = source.startswith(EXPLICIT_LOCAL)
            bad = file_problem(resolved) if os.path.lexists(resolved) else None
            if bad:  # there, but no file or folder to read (a loop, a FIFO, a device, NUL bytes): refused now
                errors.append((at, f"local path {source!r} ({resolved}): {bad}"))
                continue
            folder = folders.get(at)
            if folder is not None and os.path.lexists(resolved):
                bad = target_folder_problem(resolved, folder[1])
                if bad:  # a file is refused now; a folder without its marker may be filled before submit
                    into = errors if not os.path.isdir(resolved) else missing
                    into.append((at, f"{folder[0]}: local path {source!r} ({resolved}) {bad}"))
                    continue
            if (explicit and os.path.exists(resolved)) or (not explicit and resolved != source):
                continue  # a local path, found where the spec file says
            elsewhere = _found_elsewhere(source)
            hub = (HUB_DATA_DIR.fullmatch(source) and not source.endswith(DATA_FILE_SUFFIXES) if key == "files"
                   else _HUB_ID.fullmatch(source))
            if not explicit and not elsewhere and hub:
                continue  # a hub id (or a hub data_dir, for `files`)
            message = (f"local path {source!r} not found in {spec_dir} (the spec file's folder: relative paths "
                       f"are resolved against it)")
            if elsewhere:
                fix = os.path.relpath(os.path.join(elsewhere, os.path.expanduser(source)), spec_dir)
                errors.append((at, f"{message}; it exists relative to {elsewhere}: write {fix!r}"))
            else:
                missing.append((at, message))
    return errors, missing


_DOTTED_PATH_SECTIONS = {"models": "model", "datasets": "dataset"}  # spec section -> its dotted-axis prefix


def _dotted_path_values(spec: Spec, prefix: str, keys: tuple[str, ...]):
    """(field, YAML path, value) of each string value a dotted axis gives a path field
    (`dataset.source`, `dataset.files.honest`, `model.source`) in grid, zip or include."""
    places = [(join("grid", a), a, v) for a, v in spec.grid.items()]
    places += [(join(join("zip", i), a), a, v) for i, g in enumerate(spec.zip) for a, v in g.items()]
    places += [(join(join("include", i), a), a, v) for i, e in enumerate(spec.include) for a, v in e.items()]
    for at, axis, value in places:
        section, _, rest = axis.partition(".")
        if section != prefix or rest.split(".")[0] not in keys:
            continue
        for i, v in enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]:
            if isinstance(v, str):
                yield rest.split(".")[0], at if i is None else join(at, i), v


def target_folder_problem(path: str, kind: str) -> str | None:
    """What makes a local target no PEFT adapter folder (adapter_config.json) or model folder
    (config.json): a regular file such as /etc/passwd, or a folder without the marker."""
    marker, what = ("adapter_config.json", "PEFT adapter") if kind == "adapter" else ("config.json", "Hugging Face model")
    if not os.path.isdir(path):
        return f"is a file, not a {what} folder (one that holds {marker})"
    if not os.path.isfile(os.path.join(path, marker)):
        return f"has no {marker}: not a {what} folder"
    return None


def _path_values(section: str, name: str, entry: Any, keys: tuple[str, ...]):
    """(field, YAML path, value) of each path-holding field that is set, mapping fields expanded."""
    for key in keys:
        value = entry
        for part in key.split("."):  # a nested field (a method's init_from.adapter)
            value = getattr(value, part, None)
        if isinstance(value, dict):
            for k, v in value.items():
                yield key, join(join(join(section, name), key), k), v
        elif value:
            yield key, join(join(section, name), key), value


def _found_elsewhere(source: str) -> str | None:
    """The folder (current directory or checkout) a relative path exists in, if it does."""
    if os.path.isabs(os.path.expanduser(source)):
        return None
    for base in dict.fromkeys((Path.cwd(), CHECKOUT)):
        if (base / source).exists():
            return str(base)
    return None
