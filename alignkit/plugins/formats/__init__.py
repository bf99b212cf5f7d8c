"""Data formats: one module per format, each a pure-python row converter (no torch, no `datasets`).

A format module in this package is found by scanning it (`names()`, `get(name)`); adding a format
is adding one file. Each module defines
  ROWS      the type of rows it yields, one of ROW_TYPES (TRL's dataset types, docs/data.md):
              preference           {prompt, chosen, rejected}, conversational
              unpaired_preference  {prompt, completion, label}, conversational, label a bool
              prompt_completion    {prompt, completion}, conversational
              language_modeling    {messages} (conversational) or {text} (standard)
  convert(rows, label, part) -> list[dict]
            `rows` iterates dicts and has `column_names` (a datasets.Dataset in the job, a `Sample`
            at plan time); `label` names the file for messages; `part` is the preference read and counts (`preference`, `rows`, `kept`,
            `drop(reason)`: jobs/data/report.py PartReport). A row that cannot be used raises
            RowError naming the file, the row (1-based) and the field; a known non-pair is dropped
            and counted under one of the module's REASONS.
  detect(columns, first) -> bool   (optional) whether `format: auto` picks this format for a source
            with these column names and this first row; DETECT_ORDER says who is asked first.
  PREFERENCES (optional) the preference names the format derives itself (beavertails).

`format: auto` (the default) picks the first format in DETECT_ORDER whose `detect` accepts the
data; the named formats (hh_rlhf, beavertails, normalized) keep their behaviour and job ids.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any, Iterable, Optional

AUTO = "auto"
ROW_TYPES = ("preference", "unpaired_preference", "prompt_completion", "language_modeling")
# Asked in this order by `format: auto` (the most specific columns first).
DETECT_ORDER = ("beavertails", "unpaired_preference", "hh_rlhf", "preference", "prompt_completion",
                "language_modeling")

_MODULES: dict[str, ModuleType] = {}


class RowError(ValueError):
    """A row the data cannot be used with; str() is one line naming the file, the row and the field."""


class UnknownFormat(ValueError):
    """`format: auto` found no format for these columns; str() is one line."""


def _load() -> dict[str, ModuleType]:
    if not _MODULES:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                _MODULES[info.name] = importlib.import_module(f"{__name__}.{info.name}")
    return _MODULES


def names() -> list[str]:
    """Every registered format (the spec's `format:` also takes `auto`)."""
    return sorted(_load())


def get(name: str) -> ModuleType:
    mods = _load()
    if name not in mods:
        raise KeyError(f"unknown data format {name!r} (known: {AUTO}, {', '.join(sorted(mods))})")
    return mods[name]


def row_type(name: str) -> str:
    return get(name).ROWS


def detect(columns: Iterable[str], first: Optional[dict], label: str) -> str:
    """The format `format: auto` reads a source with these columns as (raises UnknownFormat)."""
    cols = list(columns)
    mods = _load()
    order = [n for n in DETECT_ORDER if n in mods] + sorted(n for n in mods if n not in DETECT_ORDER)
    for name in order:
        test = getattr(mods[name], "detect", None)
        if test is not None and test(set(cols), first or {}):
            return name
    raise UnknownFormat(f"{label}: no data format matches its fields ({', '.join(cols) or 'none'}); TRL's formats "
                        f"need prompt/chosen/rejected (or chosen/rejected), prompt/completion/label, prompt/completion, "
                        f"messages or text (docs/data.md), or set the dataset's format")


def rows_type(columns: Iterable[str]) -> str:
    """The ROW_TYPES entry of converted rows with these columns."""
    cols = set(columns)
    if "chosen" in cols:
        return "preference"
    if "label" in cols:
        return "unpaired_preference"
    if "completion" in cols:
        return "prompt_completion"
    return "language_modeling"


# What each method trains on (a method's `data_types`, default: pairs), and how other data is used.
DEFAULT_DATA_TYPES = ("preference",)


def data_types(method: Any) -> tuple[str, ...]:
    return tuple(getattr(method, "data_types", DEFAULT_DATA_TYPES))


def refusal(method: Any, rows: str) -> Optional[str]:
    """Why a method cannot train on rows of this type (None: it can). `method` is a Method class."""
    accepted = data_types(method)
    if rows in accepted:
        return None
    why = {"unpaired_preference": "each row holds one completion with a label, and a pairwise loss needs a chosen "
                                  "and a rejected response to the same prompt",
           "prompt_completion": "the rows hold one completion each, no preference between two",
           "language_modeling": "the rows hold conversations or text, no preference between two responses",
           "preference": "the method takes no preference pairs"}[rows]
    return (f"{method.name} trains on {' or '.join(t.replace('_', ' ') for t in accepted)} data, not "
            f"{rows.replace('_', ' ')} data: {why}")


class Sample(list):
    """Rows read at plan time (a list of dicts) with the source's column names, as `convert` expects."""

    def __init__(self, rows: list[dict], column_names: list[str]):
        super().__init__(rows)
        self.column_names = column_names


# ---- the field checks every format shares ----------------------------------------------------------
def require_columns(ds: Any, columns: tuple[str, ...], label: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise RowError(f"{label}: field {missing[0]!r} missing (the data has fields: "
                       f"{', '.join(ds.column_names) or 'none'})")


def field(row: dict, key: str, types: type | tuple[type, ...], label: str, i: int) -> Any:
    """row[key], checked present and of the expected type; `i` is the 0-based row index."""
    value = row.get(key)
    if value is None:
        raise RowError(f"{label} row {i + 1}: field {key!r} missing")
    allowed = types if isinstance(types, tuple) else (types,)
    # bool is an int subclass: a label 0/1 given as true/false is a wrong type, not a silent cast
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        want = " or ".join(t.__name__ for t in allowed)
        raise RowError(f"{label} row {i + 1}: field {key!r} should be {want}, got {type(value).__name__}")
    return value


ROLES = ("system", "user", "assistant")


def messages(value: Any, key: str, default_role: str, label: str, i: int) -> list[dict]:
    """A field as conversational messages: a plain string is one `default_role` turn (TRL's standard
    format, rendered with the model's template); a list must hold {role, content} turns, none empty."""
    where = f"{label} row {i + 1}: field {key!r}"
    if isinstance(value, str):
        value = [{"role": default_role, "content": value}]
    if not value:
        raise RowError(f"{where} is empty")
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise RowError(f"{where} message {j + 1} should be {{'role': str, 'content': str}}, got {m!r:.80}")
        if m["role"] not in ROLES:
            raise RowError(f"{where} message {j + 1}: unknown role {m['role']!r} (expected {', '.join(ROLES)})")
        if not m["content"].strip():
            raise RowError(f"{where} message {j + 1} is empty")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def prompt_messages(value: Any, label: str, i: int) -> list[dict]:
    out = messages(value, "prompt", "user", label, i)
    if out[-1]["role"] != "user":
        raise RowError(f"{label} row {i + 1}: field 'prompt' should end with a user message")
    return out


def response_messages(value: Any, key: str, label: str, i: int) -> list[dict]:
    out = messages(value, key, "assistant", label, i)
    if any(m["role"] != "assistant" for m in out):
        raise RowError(f"{label} row {i + 1}: field {key!r} should hold assistant messages only")
    return out


def is_conversational(value: Any) -> bool:
    """TRL's test (trl/data_utils.py is_conversational): a list of dicts with a `role`."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


__all__ = ["AUTO", "DEFAULT_DATA_TYPES", "DETECT_ORDER", "data_types", "refusal", "rows_type", "ROW_TYPES", "RowError", "Sample", "UnknownFormat", "detect", "field", "get",
           "is_conversational", "messages", "names", "prompt_messages", "require_columns", "response_messages",
           "row_type"]
