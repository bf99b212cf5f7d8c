"""Conformance of every registered method type (alignkit/plugins/methods/<type>.py), no list to edit:
a new method file is checked here as soon as it registers. Per name: registered where the registry
looks, typed fields under CommonFields with every method-specific field defaulted, the train hooks
implemented, importable on a login node without the compute side, and a spec using it plans into
train configs that load through the contract."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.plan.compiler import load_plan
from alignkit.contract.methods import CommonFields, Method
from alignkit.contract import parse
from alignkit.plugins.methods import METHODS, method, resolve_config
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.written import written

ROOT = Path(__file__).resolve().parents[2]
NAMES = METHODS.names()
HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "jobs")


@pytest.mark.parametrize("name", NAMES)
def test_registered_in_its_own_module_with_typed_fields(name):
    cls = METHODS.get(name)
    assert issubclass(cls, Method) and cls.name == name
    assert cls.__module__.startswith("alignkit.plugins.methods."), cls.__module__
    assert dataclasses.is_dataclass(cls.fields) and issubclass(cls.fields, CommonFields)
    assert cls.fields.__dataclass_params__.frozen
    own = [f for f in dataclasses.fields(cls.fields) if f.name not in {c.name for c in dataclasses.fields(CommonFields)}]
    missing = [f.name for f in own if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    assert not missing, f"{name}: method fields without a default (a spec would have to set them): {missing}"
    assert cls.config_class() is cls.config_class()  # one config class per method, cached


@pytest.mark.parametrize("name", NAMES)
def test_train_hooks_are_implemented(name):
    cls = METHODS.get(name)
    for hook in ("examples", "trl_args", "trainer"):
        assert getattr(cls, hook) is not getattr(Method, hook), f"{name} does not implement Method.{hook}"
    assert cls.columns, f"{name}: `columns` names the trainer-ready columns its examples make"


@pytest.mark.parametrize("name", NAMES)
def test_importable_without_the_compute_side(name):
    """The login node imports the plug-in for its fields and checks: no torch, TRL or jobs/ at import."""
    module = METHODS.get(name).__module__
    code = f"import sys, json, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(proc.stdout) == [], f"{module} imports {proc.stdout.strip()} at import time"


@pytest.mark.parametrize("name", NAMES)
def test_a_spec_using_it_plans_into_contract_configs(name, tmp_path):
    d = base()
    d["methods"] = {"m": {"type": name, "learning_rate": 1.0e-4,
                          "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj"]}}}
    d["grid"].update(model=["m1"], dataset=["hh"], preference=["helpful"], method=["m"], peft=["lora"], seed=[0])
    d.pop("merges")
    plan = load_plan(write(tmp_path, d))
    train = [j for j in plan.jobs if j.stage == "train"]
    assert len(train) == 1
    config = parse(written(train[0]), "config.json")  # read back as the job reads it: the compiled config
    assert config == train[0].config
    assert config.method.type == name and isinstance(config.method, METHODS.get(name).fields)
    block = resolve_config("m", config.method)  # resolving is a fixed point on its own output
    assert block == config.method and json.loads(json.dumps(written(train[0])["method"])) == written(train[0])["method"]
    assert method(name).advice(config.method) is not None
