"""The AlpacaEval fields of a benchmark (reference, annotator, length_controlled) and max_new_tokens."""

from __future__ import annotations

import pytest

from alignkit.plan.compiler import load_plan
from alignkit.contract.errors import SpecError
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.written import written


def _with(**fields):
    d = base()
    d["evals"]["benchmarks"]["ae"].update(fields)
    return d


@pytest.mark.parametrize("fields, expected", [
    ({"annotator": "../../etc/passwd"}, r"evals.benchmarks.ae.annotator: '../../etc/passwd' is not a plain"),
    ({"reference": "a/b.json"}, r"evals.benchmarks.ae.reference: 'a/b.json' is not a plain file"),
    ({"length_controlled": "yes"}, r"evals.benchmarks.ae.length_controlled: expected true or false"),
    ({"max_new_tokens": 0}, r"evals.benchmarks.ae.max_new_tokens: must be positive, got 0"),
])
def test_bad_alpaca_eval_fields_name_the_key(tmp_path, fields, expected):
    with pytest.raises(SpecError, match=expected):
        load_plan(write(tmp_path, _with(**fields)))


def test_reference_and_annotator_belong_to_alpaca_eval_only(tmp_path):
    d = base()
    d["evals"]["benchmarks"]["mmlu"]["annotator"] = "weighted_alpaca_eval_gpt4_turbo"
    with pytest.raises(SpecError, match="evals.benchmarks.mmlu.annotator: only an alpaca_eval benchmark takes"):
        load_plan(write(tmp_path, d))


def test_the_fields_reach_the_judge_config(tmp_path):
    plan = load_plan(write(tmp_path, _with(reference="alpaca_eval.json", annotator="alpaca_eval_gpt4",
                                           length_controlled=False)))
    judge = next(j for j in plan.jobs if j.stage == "judge")
    ae = written(judge)["benchmarks"]["ae"]
    assert (ae["reference"], ae["annotator"], ae["length_controlled"], ae["max_new_tokens"]) == \
        ("alpaca_eval.json", "alpaca_eval_gpt4", False, None)  # None: the job uses AlpacaEval's 2048
