"""`select` checked at plan against what the study will measure (issue 25 item 6; alignkit/plan/select_check.py):
an unknown metric (with "did you mean"), a goal against the metric's direction, and a loss chosen over a
field that changes the loss itself are each refused in one located line, exit 2."""

from __future__ import annotations


from alignkit.cli.main import main
from tests.fixtures.spec_fixtures import write
from tests.plan.test_spec13 import plan_of, problems_of, small


def _select(tmp_path, grid: dict, select: dict, validation: bool = True) -> list[str]:
    d = small(**grid)
    if validation:
        d["datasets"]["hh"]["validation"] = {"split": "test"}
    d["select"] = select
    return problems_of(tmp_path, d)


def test_unknown_metric_says_did_you_mean(tmp_path):
    (p,) = _select(tmp_path, {"method.lora.r": [8, 16]}, {"metric": "validation_los", "goal": "min", "over": ["method.lora.r"]})
    assert "select.metric: 'validation_los' is not a metric this study produces; did you mean 'validation_loss'?" in p
    assert p.startswith(str(tmp_path / "spec.yaml") + ":")
    (p,) = _select(tmp_path, {"method.lora.r": [8, 16]}, {"metric": "mmlu_acc", "goal": "max", "over": ["method.lora.r"]})
    assert "did you mean 'mmlu'?" in p
    (p,) = _select(tmp_path, {"method.lora.r": [8, 16]}, {"metric": "validation_loss", "goal": "min",
                                                          "over": ["method.lora.r"]}, validation=False)
    assert "select.metric: 'validation_loss': no dataset holds out a validation split" in p


def test_goal_against_the_metrics_direction(tmp_path):
    (p,) = _select(tmp_path, {"method.lora.r": [8, 16]}, {"metric": "validation_loss", "goal": "max", "over": ["method.lora.r"]})
    assert "select.goal: max of 'validation_loss', whose lower values are better: did you mean goal: min?" in p
    (p,) = _select(tmp_path, {"method.lora.r": [8, 16]}, {"metric": "mmlu", "goal": "min", "over": ["method.lora.r"]})
    assert "select.goal: min of 'mmlu', whose higher values are better" in p
    (p,) = _select(tmp_path, {"method.lora.r": [8, 16]},
                   {"metric": "validation_reward_accuracy", "goal": "min", "over": ["method.lora.r"]})
    assert "did you mean goal: max?" in p


def test_a_loss_over_fields_that_change_the_loss_is_refused(tmp_path):
    for axis in ("method.beta", "method.loss_type"):
        values = [0.1, 0.5] if axis == "method.beta" else ["sigmoid", "ipo"]
        (p,) = _select(tmp_path, {axis: values}, {"metric": "validation_loss", "goal": "min", "over": [axis]})
        assert f"select.over[0]: 'validation_loss' over '{axis}': a loss compared across values that change the " \
               "loss itself is not comparable" in p
    d = small(method=["sft", "dpo"])
    d["datasets"]["hh"]["validation"] = {"split": "test"}
    d["select"] = {"metric": "train/final_loss", "goal": "min", "over": ["method"]}
    (p,) = problems_of(tmp_path, d)
    assert "'train/final_loss' over 'method' (methods of different types dpo, sft)" in p
    # the same search on a metric the loss's definition does not change is fine, as is a loss over LoRA's rank
    d = small(**{"method.beta": [0.1, 0.5]})
    d["datasets"]["hh"]["validation"] = {"split": "test"}
    d["select"] = {"metric": "validation_reward_accuracy", "goal": "max", "over": ["method.beta"]}
    assert plan_of(tmp_path, d).jobs
    d["select"] = {"metric": "validation_loss", "goal": "min", "over": ["method.lora.r"]}
    d["grid"]["method.lora.r"] = [8, 16]
    assert plan_of(tmp_path, d, "r.yaml").jobs


def test_plan_refuses_an_unknown_metric_in_one_line(tmp_path, capsys):
    d = small(**{"method.lora.r": [8, 16]})
    d["select"] = {"metric": "bbh_em", "goal": "max", "over": ["method.lora.r"]}
    path = write(tmp_path, d, "spec.yaml")
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "select.metric: 'bbh_em' is not a metric this study produces" in err[0]
    assert "Traceback" not in err[0]
