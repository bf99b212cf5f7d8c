"""A run's section entries with its dotted axes in place, converted and checked exactly like
the same fields written in the spec (the compiler calls these per run).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from alignkit.plugins.methods import METHODS
from alignkit.contract.schema import Problems, from_dict, is_missing, join, plain
from alignkit.spec.model import Spec
from alignkit.spec.axes import section_class, section_entry
from alignkit.spec.checks import SECTION_CHECKS


class _Capture(Problems):
    """Problems kept as (path, message) pairs, to be re-told at the grid key that caused them."""

    def __init__(self) -> None:
        super().__init__("", {})
        self.found: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.found.append((path, message))


def override_section(spec: Spec, section: str, entry: Optional[str], values: dict[str, Any]) -> tuple[Any, list[str]]:
    """The section entry with `values` ({field path under the section: value}) in place, converted
    and checked exactly like the same fields written in the spec: (new entry, problems)."""
    obj = section_entry(spec, section, entry)
    data = plain(obj)
    for rest, value in values.items():
        node = data
        parts = rest.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or parts[-1] not in node:
            return None, [f"{section} '{entry}' has no field '{rest}'" if entry else f"{section} has no field '{rest}'"]
        node[parts[-1]] = value
    capture = _Capture()
    new = from_dict(section_class(spec, section, entry), data, "", capture)
    if not is_missing(new):
        SECTION_CHECKS.get(section, lambda *_: None)(spec, new, "", capture)
    return new, [f"{p}: {m}" if p else m for p, m in capture.found]


def check_run(spec: Spec, sections: dict[str, Any], names: dict[str, str]) -> list[str]:
    """The spec-wide rules of a run's method re-checked on the run itself, its dotted axes in place:
    `sections` ({model, dataset, method, peft, training: resolved spec object}), `names` the run's
    entry names. A rule a section obeys applies to every resolved run, however its value arrived
    (e.g. ORPO refuses training.precompute_ref_log_probs whether the section or an axis sets it)."""
    check_spec = getattr(METHODS.get(spec.methods[names["method"]].type)(), "check_spec", None)
    if check_spec is None:
        return []
    one = dataclasses.replace(spec, training=sections["training"], models={names["model"]: sections["model"]},
                              peft={names["peft"]: sections["peft"]})
    capture = _Capture()
    check_spec(sections["method"], one, join("methods", names["method"]), capture)
    return [f"{p}: {m}" if p else m for p, m in capture.found]
