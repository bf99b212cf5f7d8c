"""Executors by name: `get("slurm")`, `get("local")`. A module in this package that defines a
`@register`ed Backend is found without editing anything else (the package is scanned once)."""

from __future__ import annotations

import importlib
import pkgutil

from alignkit.backends.base import Backend
from alignkit.contract.errors import UserError

_REGISTRY: dict[str, type[Backend]] = {}
_scanned = False


def register(cls: type[Backend]) -> type[Backend]:
    _REGISTRY[cls.name] = cls
    return cls


def _scan() -> None:
    global _scanned
    if not _scanned:
        for mod in pkgutil.iter_modules(__path__):
            if mod.name != "base":
                importlib.import_module(f"{__name__}.{mod.name}")
        _scanned = True


def names() -> list[str]:
    _scan()
    return sorted(_REGISTRY)


def get(name: str) -> Backend:
    _scan()
    if name not in _REGISTRY:
        raise UserError(f"--executor: unknown executor '{name}' (known: {', '.join(names())})")
    return _REGISTRY[name]()
