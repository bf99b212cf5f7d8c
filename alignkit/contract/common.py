"""Config types more than one stage's contract uses."""

from __future__ import annotations

from dataclasses import field, make_dataclass

from alignkit.contract.sections import ModelSpec


def named(base: type) -> type:
    """`base` (a spec dataclass: its fields and defaults, the one place they live) plus a required
    keyword-only `name`, as the compiler writes a section into a job's config."""
    return make_dataclass(base.__name__.removesuffix("Spec") + "Config", [("name", str, field(kw_only=True))],
                          bases=(base,), frozen=True)


# config["model"] of train, eval and merge jobs: the spec's model with its name and an absolute source
ModelConfig = named(ModelSpec)
