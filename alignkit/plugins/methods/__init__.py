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


def resolve_config(name: str, fields: Any) -> Any:
    """config.json's method block for the spec's method `name` (compile time): its typed config (the
    fields plus `name`), the chain back at its defaults (compile writes it as config["init"])."""
    import dataclasses

    cls = METHODS.get(fields.type).config_class()
    values = {f.name: getattr(fields, f.name) for f in dataclasses.fields(fields) if f.name not in (*CHAIN_KEYS, "name")}
    return cls(**values, name=name)


__all__ = ["METHODS", "method", "method_fields_class", "resolve_config"]
