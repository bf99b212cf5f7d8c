"""Conformance of every registered benchmark type (alignkit/plugins/benchmarks/<type>.py), no list to
edit. Per name: registered where the registry looks with typed fields; its flags agree with its hooks
(a generating type has prompts and a reference length, a judged one a judge field and `score`); its
fields reach the spec's and the job config's benchmark classes; and the plug-in, the registry and the
contract import on a login node without its compute module (`<type>_run.py`) or jobs/."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.contract.benchmarks import Benchmark, CommonFields
from alignkit.contract.registry import COMPUTE_SUFFIX
from alignkit.plugins import benchmarks

ROOT = Path(__file__).resolve().parents[2]
NAMES = benchmarks.BENCHMARKS.names()
HEAVY = ("torch", "transformers", "lm_eval", "datasets", "jobs")


@pytest.mark.parametrize("name", NAMES)
def test_registered_in_its_own_module_with_typed_fields(name):
    cls = benchmarks.BENCHMARKS.get(name)
    assert issubclass(cls, Benchmark) and cls.name == name
    assert cls.__module__ == f"alignkit.plugins.benchmarks.{cls.__module__.rsplit('.', 1)[-1]}"
    assert not cls.__module__.endswith(COMPUTE_SUFFIX)
    assert dataclasses.is_dataclass(cls.fields) and issubclass(cls.fields, CommonFields)
    assert cls.fields.__dataclass_params__.frozen
    assert benchmarks.get(name) is benchmarks.get(name)  # types hold no state: one instance


@pytest.mark.parametrize("name", NAMES)
def test_flags_agree_with_the_hooks(name):
    cls = benchmarks.BENCHMARKS.get(name)
    assert cls.run is not Benchmark.run, f"{name} does not implement run"
    if cls.judged:
        assert cls.generates, f"{name}: a judged type scores generations, so it generates"
        assert cls.score is not Benchmark.score, f"{name}: judged but no score hook"
        assert "judge" in {f.name for f in dataclasses.fields(cls.fields)}, f"{name}: judged without a judge field"
        assert cls.judge_shape is not None, f"{name}: judged types give plan's judge-cost estimate their shape"
    if cls.generates:
        assert cls.prompts is not Benchmark.prompts, f"{name}: generates but no prompts hook (preview, eval)"
        assert isinstance(cls.reference_max_new_tokens, int) and cls.reference_max_new_tokens > 0
    else:
        assert cls.reference_max_new_tokens is None
    for key in cls.path_fields:
        assert key in {f.name for f in dataclasses.fields(cls.fields)} | set(benchmarks.LEGACY_KEYS), key


@pytest.mark.parametrize("name", NAMES)
def test_its_fields_reach_the_spec_and_config_classes(name):
    own = {f.name for f in dataclasses.fields(benchmarks.BENCHMARKS.get(name).fields)}
    for cls in (benchmarks.spec_class(), benchmarks.config_class()):
        assert own <= {f.name for f in dataclasses.fields(cls)}, cls.__name__
    assert set(benchmarks.config_keys(name)) <= {f.name for f in dataclasses.fields(benchmarks.config_class())}
    assert name in benchmarks.reference_max_new_tokens() or not benchmarks.get(name).generates


@pytest.mark.parametrize("name", NAMES)
def test_login_side_imports_leave_the_compute_side_alone(name):
    module = benchmarks.BENCHMARKS.get(name).__module__
    code = ("import sys, json\nfrom alignkit.plugins import benchmarks\nbenchmarks.BENCHMARKS.names()\n"
            f"import {module}, alignkit.contract.eval, alignkit.contract.judge\n"
            f"print(json.dumps([m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
            f"or m.endswith({COMPUTE_SUFFIX!r})]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(proc.stdout) == [], f"importing {module} loaded {proc.stdout.strip()}"


def test_an_unknown_type_lists_every_registered_one():
    with pytest.raises(KeyError) as exc:
        benchmarks.BENCHMARKS.get("helm")
    assert str(exc.value) == f"unknown benchmark type 'helm' (known: {', '.join(NAMES)})"
