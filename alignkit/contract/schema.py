"""Strict YAML → frozen dataclass loading, in the spirit of lingua's `dataclass_from_dict`.

Every problem is collected (not just the first) as one line: `file:line: yaml.path: message`.
Unknown keys, wrong types and values outside a `Literal` are errors; fields without a default
are required. Only `yaml.safe_load`-equivalent loading is used.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import stat
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from alignkit.contract.errors import SpecError


class Problems:
    """Collects one-line problems, each located in the YAML file by its key path."""

    def __init__(self, file: str, lines: dict[str, int]):
        self.file = file
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        line = self.lines.get(path)
        if line is None:  # fall back to the nearest enclosing key that has a line
            probe = path
            while line is None and probe:
                probe = _parent(probe)
                line = self.lines.get(probe)
        where = f"{self.file}:{line}" if line else self.file
        self.items.append(one_line(f"{where}: {path or '<top>'}: {message}"))

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(self.items)


def _parent(path: str) -> str:
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path.rpartition(".")[0]


def join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


# Bounds on what a spec or profile file may be: real specs are a few kB and a few hundred nodes,
# nested no more than 8 levels (docs/spec.md, "Limits and refusals").
MAX_FILE_BYTES = 1 << 20  # 1 MiB
MAX_NODES = 100_000  # YAML nodes after alias expansion (an alias bomb expands a 4 kB file to GBs)
MAX_DEPTH = 64  # nesting levels (PyYAML's composer recurses: deeper input is a RecursionError)
MAX_INT = 2**63 - 1  # every integer field fits a signed 64-bit integer

# Characters that end a line or a shell word where a value reaches an sbatch script or a file
# name: C0/C1 controls (newline, NUL, tab, ESC, DEL, NEL) and the Unicode line/paragraph separators.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with every control character escaped, so a message is always exactly one line."""
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def read_yaml(path: str | Path) -> tuple[Any, dict[str, int], str]:
    """Parse a YAML file safely; return (data, {key path: line number}, text).

    Refuses, each with one line and before doing any real work: a path that is not a regular file
    (a FIFO or /dev/zero is never read), a file over MAX_FILE_BYTES, bytes that are not UTF-8,
    nesting deeper than MAX_DEPTH, more than MAX_NODES nodes after alias expansion, recursive
    aliases and duplicate keys (YAML itself keeps the last one silently)."""
    path = Path(path)
    text = _read_text(path)
    loader = None
    try:
        loader = _LOADER(text, str(path))  # the reader refuses non-printable characters here
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        if node is not None:
            _check_size(node, str(path))
            duplicates: list[str] = []
            _index_lines(node, "", lines, duplicates, str(path), set())
            if duplicates:
                raise SpecError(duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_error(path, text, exc)]) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise SpecError([f"{path}: unreadable value: {one_line(str(exc))}"]) from None
    finally:
        if loader is not None:
            getattr(loader, "dispose", lambda: None)()
    return data, lines, text


def _read_text(path: Path) -> str:
    """The file's text, opened without blocking and checked to be a regular file before reading."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise SpecError([f"{path}: is a directory, not a YAML file"]) from None
    except OSError as exc:
        raise SpecError([f"{path}: cannot open: {exc.strerror}"]) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise SpecError([f"{path}: is a directory, not a YAML file"])
        kind = _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise SpecError([f"{path}: is a {kind}, not a regular file; refused without reading it"])
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError([f"{path}: larger than {MAX_FILE_BYTES} bytes; a spec is a few kB (refused)"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError([f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"]) from None


_FILE_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
               stat.S_IFSOCK: "socket"}


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f"{path}:{mark.line + 1}"
    elif isinstance(getattr(exc, "position", None), int):  # a reader error: an offset, no mark
        where = f"{path}:{text[: exc.position].count(chr(10)) + 1}"
    else:
        where = str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{where}: YAML syntax error: {one_line(problem)}"


class _Bounded:
    """A composer that refuses nesting deeper than MAX_DEPTH while it reads, naming the key path,
    instead of recursing until Python's stack runs out."""

    def _init_bounds(self, file: str) -> None:
        self._file = file
        self._path: list[str] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        if isinstance(index, yaml.ScalarNode):
            label = index.value
        elif isinstance(index, int):
            label = f"[{index}]"
        else:
            label = "<key>"
        self._path.append(label)
        try:
            if len(self._path) > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[attr-defined]
                raise SpecError([f"{self._file}:{line}: {one_line(_dotted(self._path[1:9]))}...: nested deeper "
                                 f"than {MAX_DEPTH} levels (refused)"])
            return super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self._path.pop()


class _BoundedLoader(_Bounded, yaml.SafeLoader):
    def __init__(self, text: str, file: str):
        yaml.SafeLoader.__init__(self, text)
        self._init_bounds(file)


if getattr(yaml, "__with_libyaml__", False):
    # libyaml's parser (C, ~10x faster: a 100 kB spec in 0.2 s, not 2 s) feeding PyYAML's own
    # Python composer, so the depth bound and the node graph are the same as without it.
    class _FastBoundedLoader(_Bounded, yaml.composer.Composer, yaml._yaml.CParser,  # type: ignore[name-defined]
                             yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        def __init__(self, text: str, file: str):
            yaml._yaml.CParser.__init__(self, text)  # type: ignore[attr-defined]
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._init_bounds(file)

    _LOADER: type = _FastBoundedLoader
else:  # pragma: no cover - PyYAML built without libyaml
    _LOADER = _BoundedLoader


def _dotted(labels: list[str]) -> str:
    out = ""
    for label in labels:
        out += label if label.startswith("[") else (f".{label}" if out else label)
    return out


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_size(root: yaml.Node, file: str) -> None:
    """Size and depth of the document once aliases are expanded, computed on the node graph in
    time linear in the file (each anchored node once), and recursive aliases: all refused, naming
    the top-level key they are under."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    tops = root.value if isinstance(root, yaml.MappingNode) else []
    for key_node, value_node in tops:
        try:
            _measure(value_node, size, depth)
        except _Recursive as exc:
            raise SpecError([f"{file}:{exc.line}: {one_line(str(key_node.value))}: an alias refers to its own "
                             f"anchor (a recursive structure; refused)"]) from None
    try:
        _measure(root, size, depth)
    except _Recursive as exc:
        raise SpecError([f"{file}:{exc.line}: <top>: an alias refers to its own anchor (a recursive structure; "
                         f"refused)"]) from None
    if size[id(root)] > MAX_NODES or depth[id(root)] > MAX_DEPTH:
        where, label = file, "<top>"
        if tops:  # blame the biggest top-level key
            k, v = max(tops, key=lambda kv: (size[id(kv[1])], depth[id(kv[1])]))
            where, label = f"{file}:{k.start_mark.line + 1}", one_line(str(k.value))
        what = (f"expands to more than {MAX_NODES} YAML nodes through aliases (an alias bomb?)"
                if size[id(root)] > MAX_NODES else f"is nested deeper than {MAX_DEPTH} levels through aliases")
        raise SpecError([f"{where}: {label}: {what}; refused"])


class _Recursive(Exception):
    def __init__(self, line: int):
        self.line = line


def _measure(root: yaml.Node, size: dict[int, int], depth: dict[int, int]) -> None:
    """Fill size/depth (expanded, capped) for every node under root, iteratively; memoised, so a
    DAG of aliases costs its number of distinct nodes. Raises _Recursive on a cycle."""
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = min(MAX_NODES + 1, 1 + sum(size[id(c)] for c in kids))
            depth[key] = 1 + max((depth[id(c)] for c in kids), default=0)
            on_path.discard(key)
            continue
        if key in size:
            continue
        if key in on_path:
            raise _Recursive(node.start_mark.line + 1)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node))


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int], duplicates: list[str], file: str,
                 seen: set[int]) -> None:
    """Record each key path's line; report keys given twice in one mapping (naming both lines)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            sub = join(path, key) if isinstance(key, str) else join(path, "<key>")
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                ident = (key_node.tag, key)
                if ident in first and id(node) not in seen:
                    duplicates.append(f"{file}:{line}: {one_line(sub)}: duplicate key '{one_line(key)}' "
                                      f"(first at line {first[ident]}; YAML would silently keep the last)")
                first.setdefault(ident, line)
            lines[sub] = line
            _index_lines(value_node, sub, lines, duplicates, file, seen)
            lines[sub] = line
        seen.add(id(node))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, join(path, i), lines, duplicates, file, seen)


_MISSING = object()


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"


def convert(tp: Any, value: Any, path: str, problems: Problems, free_text: bool = False) -> Any:
    """Convert `value` to type `tp`; on a problem record it and return _MISSING.

    Generic refusals, whatever the field: NaN and infinities, integers beyond 64 bits, and control
    characters (newline, NUL, ...) in strings and keys, except in fields marked free text
    (`field(metadata={"free_text": True})`: descriptions, a profile's shell setup lines)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value if _check_any(value, path, problems) else _MISSING
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        scalar_args = [a for a in args if a is not type(None)]
        trials = []
        for arg in scalar_args:  # first type that accepts the value without problems
            trial = Problems(problems.file, problems.lines)
            out = convert(arg, value, path, trial, free_text)
            if not trial.items:
                return out
            trials.append((arg, trial))
        if len(scalar_args) == 1:
            return convert(scalar_args[0], value, path, problems, free_text)
        for arg, trial in trials:  # the value has this type but breaks one of its rules: say which
            if arg in (str, int, float) and type(value) is arg:
                problems.items += trial.items
                return _MISSING
        problems.add(path, f"expected {_type_name(tp)}, got {_describe(value)}")
        return _MISSING
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        problems.add(path, f"unknown value {value!r} (allowed: {', '.join(str(a) for a in allowed)})")
        return _MISSING
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.add(path, f"expected {_type_name(tp)}, got {_describe(value)}")
            return _MISSING
        items = [convert(item_tp, v, join(path, i), problems, free_text) for i, v in enumerate(value)]
        return _MISSING if any(i is _MISSING for i in items) else tuple(items)
    if origin is dict:
        _key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            problems.add(path, f"expected a mapping, got {_describe(value)}")
            return _MISSING
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                problems.add(join(path, k), f"keys must be strings, got {_describe(k)}")
                continue
            if not _check_text(k, join(path, k), problems, "key"):
                out[k] = _MISSING
                continue
            out[k] = convert(val_tp, v, join(path, k), problems, free_text)
        return _MISSING if any(v is _MISSING for v in out.values()) else out
    if dataclasses.is_dataclass(tp):
        if "__variant__" in vars(tp):  # a tagged union: the class picks the variant the mapping names
            picked = tp.__variant__(value, path, problems)
            if picked is None:
                return _MISSING
            tp, value = picked
        return from_dict(tp, value, path, problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:
                problems.add(path, f"integer {value} is out of range (beyond 64 bits)")
                return _MISSING
            return value
    elif tp is float:
        number: Any = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if abs(value) <= 1e308 else math.inf
        elif isinstance(value, str):  # YAML 1.1 reads "2e-4" as a string; accept numeric strings
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                problems.add(path, f"must be a finite number, got {one_line(str(value))}")
                return _MISSING
            return number
    elif tp is str:
        if isinstance(value, str):
            if not free_text and not _check_text(value, path, problems):
                return _MISSING
            return value
    else:
        raise TypeError(f"schema type {tp!r} not supported")
    problems.add(path, f"expected {_type_name(tp)}, got {_describe(value)}")
    return _MISSING


@functools.lru_cache(maxsize=None)
def _schema_of(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """Type hints and init fields of a dataclass, resolved once (get_type_hints is slow)."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls) if f.init}


def plain(obj: Any) -> Any:
    """A dataclass as the plain mapping its YAML or JSON would be: dataclasses -> dicts, tuples -> lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, data: Any, path: str, problems: Problems) -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and missing required keys are problems."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.add(path, f"expected a mapping, got {_describe(data)}")
        return _MISSING
    hints, fields = _schema_of(cls)
    kwargs: dict[str, Any] = {}
    ok = True
    for key in data:
        if key not in fields:
            close = [f for f in fields if similar(str(key), f)]
            hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(fields)})"
            problems.add(join(path, key), f"unknown key '{key}'{hint}")
            ok = False
    for name, field in fields.items():
        if name in data:
            value = convert(hints[name], data[name], join(path, name), problems,
                            bool(field.metadata.get("free_text")))
            if value is _MISSING:
                ok = False
            else:
                kwargs[name] = value
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            problems.add(join(path, name), f"required key '{name}' is missing")
            ok = False
    if not ok:
        return _MISSING
    return cls(**kwargs)


def _check_text(value: str, path: str, problems: Problems, what: str = "value") -> bool:
    """Names, ids, paths and partitions reach sbatch scripts and file names: one line, no NUL."""
    bad = CONTROL.search(value)
    if bad:
        problems.add(path, f"control character {bad.group()!r} in {what} {value!r} (not allowed: newline, NUL, ...)")
        return False
    return True


def _check_any(value: Any, path: str, problems: Problems) -> bool:
    """Free-form values (merge parameters, `where` filters): no NaN/inf, no control characters."""
    if isinstance(value, float) and not math.isfinite(value):
        problems.add(path, f"must be a finite number, got {value}")
        return False
    if isinstance(value, str):
        return _check_text(value, path, problems)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        problems.add(path, f"integer {value} is out of range (beyond 64 bits)")
        return False
    if isinstance(value, list):
        return all([_check_any(v, join(path, i), problems) for i, v in enumerate(value)])
    if isinstance(value, dict):
        return all([_check_any(k, join(path, k), problems) and _check_any(v, join(path, k), problems)
                    for k, v in value.items()])
    return True


def similar(a: str, b: str) -> bool:
    """Cheap typo detector: same letters give or take one edit."""
    if abs(len(a) - len(b)) > 2:
        return False
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


def is_missing(value: Any) -> bool:
    return value is _MISSING
