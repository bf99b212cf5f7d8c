"""Conformance of every merge method (jobs/merge/methods.py: METHODS), no list to edit: each one
parses with its documented defaults, builds a mergekit config naming itself with float32 compute
and the trained dtype out, takes a base exactly when it merges task vectors, and refuses an unknown
parameter in one line; every method the spec accepts is one the merge job runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.merge import methods as merge_methods

NAMES = merge_methods.METHODS


def test_every_method_the_spec_accepts_is_one_the_job_runs():
    from alignkit.spec.model import MERGE_METHODS

    assert set(MERGE_METHODS) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_build_a_mergekit_config(name, tmp_path):
    spec = merge_methods.parse_spec(name, None, 2)
    assert spec.method == name and spec.uses_base == (name in merge_methods.TASK_VECTOR_METHODS)
    inputs = [tmp_path / "a", tmp_path / "b"]
    base = tmp_path / "base"
    cfg = merge_methods.mergekit_config(spec, inputs, base if spec.uses_base else None, "float32", "bfloat16")
    assert cfg["merge_method"] == name and cfg["dtype"] == "float32" and cfg["out_dtype"] == "bfloat16"
    assert [m["model"] for m in cfg["models"]] == [str(p) for p in inputs]
    if spec.uses_base:
        assert cfg["base_model"] == str(base)
        with pytest.raises(merge_methods.MergeParameterError, match=f"^{name} needs the base model$"):
            merge_methods.mergekit_config(spec, inputs, None, "float32", "bfloat16")


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_parameter_is_one_line(name):
    with pytest.raises(merge_methods.MergeParameterError) as exc:
        merge_methods.parse_spec(name, {"no_such_knob": 1}, 2)
    assert "no_such_knob" in str(exc.value) and "\n" not in str(exc.value)


def test_an_unknown_method_lists_every_one():
    with pytest.raises(merge_methods.MergeParameterError) as exc:
        merge_methods.parse_spec("frankenmerge", None, 2)
    assert str(exc.value) == f"merge.method: 'frankenmerge' is not one of {', '.join(NAMES)}"
    assert Path(merge_methods.__file__).name == "methods.py"
