"""Any method field is an axis on any entry of its type (issue 21 item 5): a field the resolved
config leaves out at its default (DPO's loss_type: sigmoid) is still there to sweep, and a rule
that only some values of the swept field obey (label_smoothing is read by the robust loss only,
TRL 1.16) is checked per resolved run, not on the entry as written."""

from __future__ import annotations

import pytest

from alignkit.contract.errors import SpecError
from alignkit.plan.compiler import load_plan
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.written import written


def _spec(loss_types, **dpo) -> dict:
    d = base()
    d.pop("merges")
    d["methods"]["dpo"].update(dpo)
    d["grid"] = {"model": ["m1"], "dataset": ["hh"], "preference": ["helpful"], "method": ["dpo"],
                 "peft": ["lora"], "seed": [0], "method.loss_type": loss_types}
    return d


def _trains(plan):
    return [j for j in plan.jobs if j.stage == "train"]


def test_loss_type_over_a_plain_dpo_entry_plans_one_run_per_value(tmp_path):
    plan = load_plan(write(tmp_path, _spec(["sigmoid", "ipo", "hinge"])))
    trains = _trains(plan)
    assert len(trains) == 3
    assert sorted(written(j)["axes"]["method.loss_type"] for j in trains) == ["hinge", "ipo", "sigmoid"]
    # the default stays out of config.json (as for an entry that never names it); the others reach it
    assert sorted(written(j)["method"].get("loss_type", "-") for j in trains) == ["-", "hinge", "ipo"]
    assert len({j.id for j in trains}) == 3


def test_the_fix_the_old_error_suggested_works_too(tmp_path):
    d = _spec(["sigmoid"])
    del d["grid"]["method.loss_type"]
    d["methods"]["sft"] = base()["methods"]["sft"]
    d["grid"]["method"] = ["sft", "dpo"]
    d["include"] = [{"method": "dpo", "method.loss_type": ["ipo", "hinge"]}]
    plan = load_plan(write(tmp_path, d))
    assert len(_trains(plan)) == 4  # sft, dpo, dpo/ipo, dpo/hinge


def test_label_smoothing_is_checked_per_resolved_run(tmp_path):
    plan = load_plan(write(tmp_path, _spec(["robust"], label_smoothing=0.1)))  # the entry's sigmoid never trains
    assert [written(j)["method"]["label_smoothing"] for j in _trains(plan)] == [0.1]
    with pytest.raises(SpecError) as exc:
        load_plan(write(tmp_path, _spec(["robust", "ipo"], label_smoothing=0.1)))
    lines = str(exc.value).splitlines()
    assert len(lines) == 1 and "grid.method.loss_type[1]" in lines[0], lines
    assert "method.loss_type='ipo'" in lines[0] and "the ipo loss does not use label_smoothing" in lines[0]


def test_an_entry_some_run_trains_as_written_is_still_checked_as_written(tmp_path):
    d = _spec(["robust"], label_smoothing=0.1)
    d["include"] = [{"method": "dpo", "seed": 1}]  # include runs take no grid axis they do not name
    with pytest.raises(SpecError, match=r"methods\.dpo\.label_smoothing: the sigmoid loss ignores label_smoothing"):
        load_plan(write(tmp_path, d))


def test_a_problem_no_swept_value_fixes_stays_at_the_entry(tmp_path):
    with pytest.raises(SpecError) as exc:
        load_plan(write(tmp_path, _spec(["sigmoid", "ipo"], beta=-1.0)))
    assert "methods.dpo.beta: must be positive, got -1.0" in str(exc.value)
