"""A spec's axes: the named ones (AXES), dotted paths into a run's config (`method.beta`), the
values each may take, and the section entries a run's axes pick.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from alignkit.plugins.methods import METHODS
from alignkit.contract.schema import Problems
from alignkit.contract.sections import (DatasetSpec, ModelSpec, PeftSpec, TrainingSpec)
from alignkit.spec.model import (AXES, BEAVERTAILS_PREFERENCES, HH_DEFAULT_PREFERENCES, NAME, RESERVED_PREFERENCES,
                                 SECTIONS, SEED_LIMIT, Scalar, Spec)


def axis_values(spec: Spec) -> dict[str, list[Scalar]]:
    """The names each axis may take: the keys of models/datasets/methods/peft, preferences, ints."""
    return {"model": list(spec.models), "dataset": list(spec.datasets), "method": list(spec.methods),
            "peft": list(spec.peft)}


# A dotted axis: a section of the run's config, then field names (`method.lora.r`)
_DOTTED = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+")
# A preference name: a NAME without '+', which joins the parts of a mixture
PREFERENCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def is_dotted(axis: str) -> bool:
    return "." in axis


def dotted_axis_problem(axis: str) -> str | None:
    if not _DOTTED.fullmatch(axis):
        return (f"'{axis}' is not a dotted axis (a section and field names in lower case, e.g. method.beta, "
                f"method.lora.r)")
    section = axis.split(".")[0]
    if section not in SECTIONS:
        return f"dotted axis '{axis}' starts with unknown section '{section}' (known: {', '.join(SECTIONS)})"
    for field_path, why in NOT_AXES.items():
        if axis == field_path or axis.startswith(field_path + "."):
            return why
    return None


# Fields that decide what a section entry is, not a value of it: sweeping them would give a run another
# entry's shape (an sft config labelled dpo); sweep the entries by name instead.
NOT_AXES = {"method.type": "'method.type' is not an axis: a method's type decides its fields; define one method "
                           "per type and sweep them by name (grid: {method: [sft, dpo]})",
            "method.init_from": "'method.init_from' is not an axis: chain methods in methods.NAME.init_from",
            "method.init_mode": "'method.init_mode' is not an axis: set it in methods.NAME.init_mode"}


def method_fields_class(type_name: str) -> type:
    """The dataclass of a method's fields by its type (dotted-axis checks convert with it): the
    registered method's (alignkit/plugins/methods/)."""
    return METHODS.get(type_name).fields


def section_class(spec: Spec, section: str, entry: Optional[str]) -> type:
    if section == "method":
        return method_fields_class(spec.methods[entry].type)
    return {"model": ModelSpec, "dataset": DatasetSpec, "peft": PeftSpec, "training": TrainingSpec}[section]


def section_entry(spec: Spec, section: str, entry: Optional[str]) -> Any:
    return spec.training if SECTIONS[section] is None else getattr(spec, SECTIONS[section])[entry]


def provided_preferences(ds: DatasetSpec) -> Optional[tuple[str, ...]]:
    """The preference names a dataset provides; None: any name (a normalized dataset without
    files or subsets serves its one set of rows to every preference, as before issue 13)."""
    if ds.files is not None:
        return tuple(ds.files)
    if ds.subsets is not None:
        return tuple(ds.subsets)
    if ds.format == "beavertails":
        return BEAVERTAILS_PREFERENCES
    if ds.format == "hh_rlhf":
        return HH_DEFAULT_PREFERENCES
    return None


def known_preferences(spec: Spec) -> Optional[list[str]]:
    """Every preference some dataset provides (None: any name is provided somewhere)."""
    known: dict[str, None] = {}
    for ds in spec.datasets.values():
        names = provided_preferences(ds)
        if names is None:
            return None
        known.update(dict.fromkeys(names))
    return list(known)


def check_axis_value(spec: Spec, axis: str, value: Any, path: str, problems: Problems) -> bool:
    if is_dotted(axis):  # its type is checked per run, against the field it replaces (compile.py)
        bad = dotted_axis_problem(axis)
        if bad:
            problems.add(path, bad)
        return bad is None
    if axis not in AXES:
        problems.add(path, f"unknown axis '{axis}' (known: {', '.join(AXES)}, or a dotted path such as method.beta)")
        return False
    if axis == "seed":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < SEED_LIMIT:
            problems.add(path, f"seed must be an integer in [0, 2^32), got {value!r}")
            return False
        return True
    if axis == "preference":
        known = known_preferences(spec)
        parts = str(value).split("+")
        bad = [p for p in parts if not PREFERENCE_NAME.fullmatch(p) or p in RESERVED_PREFERENCES
               or (known is not None and p not in known)]
        if bad or len(set(parts)) != len(parts) or not isinstance(value, str):
            names = ", ".join(known) if known is not None else "names the datasets provide"
            problems.add(path, f"unknown preference {value!r} (known: {names}, or a mixture of them such as "
                               f"a+b; datasets provide preferences by subsets, files or their format)")
            return False
        return True
    known = axis_values(spec)[axis]
    if value not in known:
        problems.add(path, f"unknown {axis} {value!r} (known: {', '.join(map(str, known)) or 'none defined'})")
        return False
    return True


def values_of(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_name(value: str, what: str, path: str, problems: Problems) -> None:
    if not NAME.fullmatch(value):
        problems.add(path, f"{what} {value!r} must start with a letter or digit and be at most 64 letters, "
                           f"digits, '.', '_', '+' or '-'")


def swept_axes(spec: Spec) -> list[str]:
    """Named axes (canonical order), then the dotted axes of grid, zip, include and targets in
    the order the spec first gives them."""
    dotted: dict[str, None] = {}
    for mapping in (spec.grid, *spec.zip, *spec.include, *(t.axes for t in spec.targets.values())):
        if isinstance(mapping, dict):
            dotted.update((a, None) for a in mapping if is_dotted(a))
    return list(AXES) + list(dotted)
