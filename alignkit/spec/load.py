"""`load_spec`: read, type-check and cross-check a sweep spec into a validated `Spec`.

A typo, a wrong type or a dangling reference fails loudly with one line per problem naming the
file, line and YAML path (SpecError).
"""

from __future__ import annotations

from pathlib import Path

from alignkit.contract.schema import Problems, from_dict, is_missing, read_yaml
from alignkit.spec.model import Spec
from alignkit.spec.checks import check


def load_spec(path: str | Path) -> Spec:
    """Read, type-check and cross-check a sweep spec. Raises SpecError with every problem."""
    path = Path(path)
    data, lines, text = read_yaml(path)
    problems = Problems(str(path), lines)
    if data is None:
        problems.add("", "the spec is empty")
        problems.raise_if_any()
    spec = from_dict(Spec, data, "", problems)
    if is_missing(spec):
        problems.raise_if_any()
    object.__setattr__(spec, "path", path.resolve())
    object.__setattr__(spec, "text", text)
    object.__setattr__(spec, "lines", lines)
    check(spec, problems)
    problems.raise_if_any()
    return spec
