"""Dotted axes around the section checks: every rule a section obeys applies to each resolved run,
however its value arrived, and `method.type` is not an axis. Each is refused at plan with exit 2 and
one located line per problem, no traceback, nothing written."""

from __future__ import annotations

import pytest

from alignkit.cli.main import main
from tests.fixtures import spec_fixtures as sf

LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj"]}


def _spec(method_type: str = "orpo", **grid) -> dict:
    s = sf.base()
    s.pop("merges")
    s["methods"] = {"pair": {"type": method_type, "learning_rate": 1e-5, "lora": LORA},
                    "sft": {"type": "sft", "learning_rate": 1e-4, "lora": LORA}}
    s["models"]["m1"]["dtype"] = "bfloat16"
    s["grid"] = {"model": ["m1"], "dataset": ["hh"], "preference": ["helpful"], "peft": ["qlora"], "seed": [0],
                 "method": ["pair"], **grid}
    return s


def _plan(tmp_path, spec: dict, capsys) -> tuple[int, list[str]]:
    path = sf.write(tmp_path, spec)
    code = main(["plan", str(path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err)
    return code, err


CASES = [
    ({"method.type": ["dpo"]}, "sft", "grid.method.type: 'method.type' is not an axis"),
    ({"method.type": ["ppo"]}, "sft", "grid.method.type: 'method.type' is not an axis"),
    ({"method.type": ["sft", "dpo"]}, "dpo", "grid.method.type: 'method.type' is not an axis"),
    ({"method.init_from.method": ["sft"]}, "dpo", "'method.init_from' is not an axis"),
    ({"training.precompute_ref_log_probs": [False, True]}, "orpo",
     "training.precompute_ref_log_probs: ORPO has no reference model"),
    ({"training.precompute_ref_log_probs": [True]}, "cpo",
     "training.precompute_ref_log_probs: CPO has no reference model"),
    ({"training.deepspeed_stage": [0, 3]}, "orpo", "training.deepspeed_stage: ORPO with QLoRA under ZeRO-3"),
    ({"training.eval_steps": [100]}, "dpo", "grid.training.eval_steps: axis 'training.eval_steps' does not exist for run"),  # by design
]


@pytest.mark.parametrize("grid,method_type,message", CASES)
def test_a_dotted_axis_obeys_the_sections_rules(tmp_path, capsys, grid, method_type, message):
    code, err = _plan(tmp_path, _spec(method_type, **grid), capsys)
    assert code == 2 and len(err) == 1, err
    assert message in err[0] and "spec.yaml:" in err[0]
    assert not (tmp_path / "out").exists()


def test_the_same_rules_written_in_the_section_are_refused_alike(tmp_path, capsys):
    s = _spec("orpo")
    s["training"]["precompute_ref_log_probs"] = True
    code, err = _plan(tmp_path, s, capsys)
    assert code == 2 and "ORPO has no reference model" in err[0]


def test_the_allowed_values_of_those_axes_plan(tmp_path, capsys):
    s = _spec("orpo", **{"training.deepspeed_stage": [0, 2], "training.precompute_ref_log_probs": [False]})
    code, err = _plan(tmp_path, s, capsys)
    assert code == 0, err
    s = _spec("dpo", **{"training.precompute_ref_log_probs": [False, True]})  # DPO has a reference model
    code, err = _plan(tmp_path, s, capsys)
    assert code == 0, err
