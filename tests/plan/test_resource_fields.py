"""One set of resource fields: the spec's ResourceSpec is also a profile's per-stage defaults, and the
plan's resolved Resources holds the same fields (time and estimate resolved to minutes)."""

from __future__ import annotations

import dataclasses

import pytest

from alignkit.contract.errors import SpecError
from alignkit.plan.resources import BUILTIN_RESOURCES, RESOLVED, Resources
from alignkit.spec.model import ResourceSpec
from alignkit.submit.profiles import load_profile


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_resolved_resources_hold_the_spec_fields():
    assert sorted(RESOLVED.get(n, n) for n in _names(ResourceSpec)) == sorted(_names(Resources))


def test_a_profile_stage_default_is_a_resource_spec():
    defaults = load_profile("dev").defaults
    assert set(defaults) == {"train", "eval", "merge", "judge"}
    assert all(type(d) is ResourceSpec for d in defaults.values())


def test_builtins_set_every_field_a_resource_class_needs():
    placement = {"partition", "account", "qos", "constraint", "estimate"}  # from the profile, or time
    for stage, values in BUILTIN_RESOURCES.items():
        assert set(values) | placement == set(_names(ResourceSpec)), stage


@pytest.mark.parametrize("line, message", [
    ("train: {gpus: -1}", "defaults.train.gpus: must be zero or more, got -1"),
    ("eval: {time: soon}", "defaults.eval.time:"),
    ("judge: {nodes: 0}", "defaults.judge.nodes: must be positive, got 0"),
    ("merge: {constraint: 'a b'}", "defaults.merge.constraint: 'a b' is not a SLURM constraint"),
])
def test_a_profile_default_is_checked_like_the_spec(tmp_path, line, message):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\ndefaults:\n  {line}\n")
    with pytest.raises(SpecError) as err:
        load_profile(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_profile_may_set_nodes_and_estimate(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ndefaults:\n  train: {nodes: 2, estimate: '01:30:00'}\n")
    assert load_profile(str(path)).defaults["train"] == ResourceSpec(nodes=2, estimate="01:30:00")
