"""A small registry of named classes, filled by the modules of one package.

`Registry(kind, package)` imports every module of `package` the first time it is asked for a
name (pkgutil), so adding an entry is adding one file that decorates its class with
`@REGISTRY.register("name")`. Nothing else is global: the registry instance holds the mapping.
Skipped: modules named `_*` and `*_run` (a plug-in's compute side, e.g. a benchmark's
alpaca_eval_run.py, which imports jobs/ and is imported only by that plug-in's job-side hooks).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, TypeVar

T = TypeVar("T", bound=type)
COMPUTE_SUFFIX = "_run"  # a plug-in package's compute-side modules: never imported on the login node


class UnknownName(KeyError):
    """An unknown name; str() is the one-line message listing the known names."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str, package: str):
        self.kind = kind  # "method", "benchmark type": used in messages
        self.package = package
        self._entries: dict[str, type] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def add(cls: T) -> T:
            known = self._entries.get(name)
            if known is not None and known is not cls:
                raise ValueError(f"{self.kind} '{name}' is registered twice ({known.__module__} and {cls.__module__})")
            self._entries[name] = cls
            cls.name = name  # the registered name, e.g. the spec's `type:`
            return cls

        return add

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: a module that asks for a name while loading sees the rest
        pkg = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not info.name.startswith("_") and not info.name.endswith(COMPUTE_SUFFIX):
                importlib.import_module(f"{self.package}.{info.name}")

    def get(self, name: str) -> type:
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries
