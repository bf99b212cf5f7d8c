"""The one stage table and the one checkpoint rule (alignkit/contract/stages.py, checkpoints.py)
are what the spec checks, the plan, the CLI and the jobs use."""

import importlib.util

import pytest

from alignkit import contract
from alignkit.cli.main import build_parser
from alignkit.contract.checkpoints import FINAL, final_step, is_final, is_saved, unsaved_reason
from alignkit.contract.stages import STAGE_NAMES, STAGES
from alignkit.plan.resources import BUILTIN_RESOURCES
from tests.fixtures.written import written


def test_every_stage_has_its_contract_class_job_module_and_resources():
    assert STAGE_NAMES == ("train", "eval", "merge", "judge")
    assert sorted(s.submit_order for s in STAGES.values()) == list(range(len(STAGES)))
    for name, stage in STAGES.items():
        assert contract.config_class(name).__name__ == stage.config_class
        assert importlib.util.find_spec(f"jobs.{stage.name}.stage") is not None, stage.name  # found, not imported
        assert name in BUILTIN_RESOURCES
    assert set(BUILTIN_RESOURCES) == set(STAGE_NAMES)


def test_cli_stage_choices_are_the_table():
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["status", ".", "--stage", "nope"])
    for name in STAGE_NAMES:
        assert parser.parse_args(["status", ".", "--stage", name]).stage == name


@pytest.mark.parametrize("step,saved", [(100, True), (150, False), (700, True), (701, True), (50, False)])
def test_a_step_is_saved_at_multiples_of_save_steps_and_the_last(step, saved):
    assert is_saved(step, 700, 100) is saved


def test_unsaved_reason_names_the_rule():
    assert unsaved_reason(100, 700, 100) is None and unsaved_reason(700, 700, 300) is None
    assert "not a multiple of training.save_steps 100" in unsaved_reason(150, 700, 100)
    assert "beyond training.max_steps 700" in unsaved_reason(800, 700, 100)


def test_the_last_step_is_final():
    assert is_final(FINAL, 700) and is_final(700, 700) and not is_final(600, 700)
    assert final_step(700, 700) == FINAL and final_step(600, 700) == 600


@pytest.mark.parametrize("checkpoint", [100, 150, 800, 700, "final"])
def test_spec_check_and_plan_apply_the_same_rule(tmp_path, checkpoint):
    """A step the rule refuses is refused by the spec check in its words; the others are planned,
    the last step as 'final'."""
    from alignkit.contract.errors import SpecError
    from alignkit.plan.compiler import load_plan
    from tests.fixtures.spec_fixtures import base, write

    data = base()
    data["evals"]["checkpoints"] = [checkpoint]
    data["grid"] = {**data["grid"], "model": ["m1"], "dataset": ["hh"], "peft": ["lora"], "seed": [0]}
    reason = unsaved_reason(checkpoint, 700, 100) if checkpoint != FINAL else None
    path = write(tmp_path, data)
    if reason:
        with pytest.raises(SpecError, match=reason):
            load_plan(path)
        return
    plan = load_plan(path, output_dir=tmp_path / "out")
    evals = [j for j in plan.jobs if j.stage == "eval" and written(j)["target"].get("kind") == "adapter"]
    assert evals and all(written(j)["checkpoints"] == [final_step(checkpoint, 700)] for j in evals)
