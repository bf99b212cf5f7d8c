"""Strict YAML → frozen dataclass loading, in the spirit of lingua's `dataclass_from_dict`.

Every problem is collected (not just the first) as one line: `file:line: yaml.path: message`.
Unknown keys, wrong types and values outside a `Literal` are errors; fields without a default
are required. Only `yaml.safe_load`-equivalent loading is used.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from alignkit.errors import SpecError


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
        self.items.append(f"{where}: {path or '<top>'}: {message}")

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


def read_yaml(path: str | Path) -> tuple[Any, dict[str, int], str]:
    """Parse a YAML file safely; return (data, {key path: line number}, text)."""
    path = Path(path)
    if not path.exists():
        raise SpecError([f"{path}: no such file"])
    if path.is_dir():
        raise SpecError([f"{path}: is a directory, not a YAML file"])
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{where}: YAML syntax error: {problem}"]) from None
    lines: dict[str, int] = {}
    if node is not None:
        _index_lines(node, "", lines)
    return data, lines, text


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            sub = join(path, key)
            lines[sub] = key_node.start_mark.line + 1
            _index_lines(value_node, sub, lines)
            lines[sub] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, join(path, i), lines)


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


def convert(tp: Any, value: Any, path: str, problems: Problems) -> Any:
    """Convert `value` to type `tp`; on a problem record it and return _MISSING."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        scalar_args = [a for a in args if a is not type(None)]
        for arg in scalar_args:  # first type that accepts the value without problems
            trial = Problems(problems.file, problems.lines)
            out = convert(arg, value, path, trial)
            if not trial.items:
                return out
        if len(scalar_args) == 1:
            return convert(scalar_args[0], value, path, problems)
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
        items = [convert(item_tp, v, join(path, i), problems) for i, v in enumerate(value)]
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
            out[k] = convert(val_tp, v, join(path, k), problems)
        return _MISSING if any(v is _MISSING for v in out.values()) else out
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path, problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" as a string; accept numeric strings
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"schema type {tp!r} not supported")
    problems.add(path, f"expected {_type_name(tp)}, got {_describe(value)}")
    return _MISSING


def from_dict(cls: type, data: Any, path: str, problems: Problems) -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and missing required keys are problems."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.add(path, f"expected a mapping, got {_describe(data)}")
        return _MISSING
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    ok = True
    for key in data:
        if key not in fields:
            close = [f for f in fields if _similar(str(key), f)]
            hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(fields)})"
            problems.add(join(path, key), f"unknown key '{key}'{hint}")
            ok = False
    for name, field in fields.items():
        if name in data:
            value = convert(hints[name], data[name], join(path, name), problems)
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


def _similar(a: str, b: str) -> bool:
    """Cheap typo detector: same letters give or take one edit."""
    if abs(len(a) - len(b)) > 2:
        return False
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


def is_missing(value: Any) -> bool:
    return value is _MISSING
