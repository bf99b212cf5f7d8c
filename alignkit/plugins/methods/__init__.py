"""Alignment methods, one module each, registered by the spec's `type:` (docs/contract.md).

`METHODS.get("dpo")` is the DPO class; `method("dpo")` an instance; `method_fields_class("dpo")`
its spec fields (the seam the spec's dotted-axis checks use). Importing this package imports no
method module: the registry loads them all on first use.
"""

from __future__ import annotations

from typing import Any

from alignkit.contract.registry import Registry

METHODS = Registry("method type", "alignkit.plugins.methods")
CHAIN_KEYS = ("init_from", "init_mode")  # CommonFields' chained-stage keys, never in a method block


def method(kind: str) -> Any:
    """An instance of the method registered as `kind` (UnknownName lists the known ones)."""
    return METHODS.get(kind)()


def method_fields_class(kind: str) -> type:
    """The frozen dataclass of spec fields of method type `kind`."""
    return METHODS.get(kind).fields


def resolve_config(name: str, fields: Any) -> dict:
    """config.json's method block for the spec's method `name` (compile time)."""
    from alignkit.contract.methods import plain

    cfg = {"name": name, **plain(fields)}
    for key in CHAIN_KEYS:  # compile writes the chain as config["init"]: method blocks (and ids) stay
        cfg.pop(key, None)
    return method(fields.type).resolve(cfg)


__all__ = ["METHODS", "method", "method_fields_class", "resolve_config"]
