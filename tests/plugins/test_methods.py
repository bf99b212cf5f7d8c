"""The method registry (alignkit/contract/registry.py, alignkit/plugins/methods/): spec parsing by `type:`, the
methods' resolved config blocks, their checks, and the TRL arguments they build."""

from __future__ import annotations

import pytest

from alignkit.plan.compiler import load_plan
from alignkit.contract.errors import SpecError
from alignkit.plugins.methods import METHODS, method, method_fields_class
from alignkit.plugins.methods.dpo import DPOFields
from alignkit.plugins.methods.sft import SFTFields
from alignkit.contract.registry import Registry, UnknownName
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.written import written


def _plan(tmp_path, mutate):
    d = base()
    mutate(d)
    return load_plan(write(tmp_path, d))


def _problems(tmp_path, mutate) -> str:
    with pytest.raises(SpecError) as exc:
        _plan(tmp_path, mutate)
    return str(exc.value)


def test_registry_lists_known_names_on_an_unknown_one():
    assert {"sft", "dpo"} <= set(METHODS.names())
    with pytest.raises(UnknownName, match=r"unknown method type 'ppo' \(known: .*dpo.*sft"):
        METHODS.get("ppo")
    assert method_fields_class("dpo") is DPOFields and method_fields_class("sft") is SFTFields


def test_registry_refuses_one_name_for_two_classes():
    reg = Registry("thing", "alignkit.plugins.methods")
    reg.register("a")(type("A", (), {}))
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(type("B", (), {}))


def test_unknown_method_type_is_one_line_listing_the_known_types(tmp_path):
    msg = _problems(tmp_path, lambda d: d["methods"]["dpo"].update(type="ppo"))
    assert "methods.dpo.type: unknown method type 'ppo' (known: " in msg and msg.count("\n") == 0


def test_a_key_of_another_method_is_named_as_such(tmp_path):
    msg = _problems(tmp_path, lambda d: d["methods"]["sft"].update(loss_type="ipo"))
    assert "methods.sft.loss_type: loss_type is not an SFT setting (methods of type cpo, dpo take it); remove it" in msg


def test_dpo_defaults_are_resolved_and_new_fields_stay_out_of_old_configs(tmp_path):
    plan = _plan(tmp_path, lambda d: d["methods"]["dpo"].pop("beta"))
    cfg = next(written(j)["method"] for j in plan.jobs if j.stage == "train" and written(j)["method"]["type"] == "dpo")
    assert (cfg["beta"], cfg["max_prompt_length"]) == (0.1, 128)
    assert "loss_type" not in cfg and "label_smoothing" not in cfg
    sft = next(written(j)["method"] for j in plan.jobs if j.stage == "train" and written(j)["method"]["type"] == "sft")
    assert "beta" not in sft and "max_prompt_length" not in sft and sft["completion_only_loss"] is True


def test_dpo_loss_type_and_label_smoothing_reach_the_config_and_the_id(tmp_path):
    plain = _plan(tmp_path, lambda d: None)
    robust = _plan(tmp_path, lambda d: d["methods"]["dpo"].update(loss_type="robust", label_smoothing=0.1))
    cfg = next(written(j)["method"] for j in robust.jobs if j.stage == "train" and written(j)["method"]["type"] == "dpo")
    assert (cfg["loss_type"], cfg["label_smoothing"]) == ("robust", 0.1)
    ids = lambda p, kind: {j.id for j in p.jobs if j.stage == "train" and written(j)["method"]["type"] == kind}  # noqa: E731
    assert ids(plain, "sft") == ids(robust, "sft") and not ids(plain, "dpo") & ids(robust, "dpo")


@pytest.mark.parametrize("change, message", [
    ({"loss_type": "kto"}, "methods.dpo.loss_type: unknown value 'kto' (allowed: sigmoid, ipo, hinge, robust)"),
    ({"label_smoothing": 0.5}, "methods.dpo.label_smoothing: must be in [0, 0.5), got 0.5"),
    ({"loss_type": "ipo", "label_smoothing": 0.1}, "methods.dpo.label_smoothing: the ipo loss does not use"),
    # TRL 1.16's sigmoid loss never reads it (dpo_trainer.py 1387-1388): refused, pointing at robust
    ({"label_smoothing": 0.1}, "methods.dpo.label_smoothing: the sigmoid loss ignores label_smoothing (TRL 1.16); "
                               "for label-flip-robust DPO set loss_type: robust"),
    ({"beta": 0.0}, "methods.dpo.beta: must be positive, got 0.0"),
    ({"max_prompt_length": 600}, "methods.dpo.max_prompt_length: 600 must be below max_length 512"),
    ({"completion_only_loss": False}, "methods.dpo.completion_only_loss: an SFT setting"),
])
def test_dpo_checks(tmp_path, change, message):
    assert message in _problems(tmp_path, lambda d: d["methods"]["dpo"].update(change))


def test_dpo_trl_args_carry_loss_type_label_smoothing_and_beta(tmp_path):
    lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ("q_proj",)}
    from alignkit.contract.methods import LoraFields

    f = DPOFields(type="dpo", learning_rate=1e-4, lora=LoraFields(**lora), beta=0.3, loss_type="robust",
                  label_smoothing=0.2)
    args = method("dpo").trl_args(f, {"output_dir": str(tmp_path), "report_to": "none", "bf16": False})
    assert (args.beta, args.loss_type, args.label_smoothing) == (0.3, ["robust"], 0.2)
    default = method("dpo").trl_args(DPOFields(type="dpo", learning_rate=1e-4, lora=LoraFields(**lora)),
                                     {"output_dir": str(tmp_path), "report_to": "none", "bf16": False})
    assert (default.beta, default.loss_type, default.label_smoothing) == (0.1, ["sigmoid"], 0.0)


def test_plan_refuses_label_smoothing_with_sigmoid_in_one_line(tmp_path, capsys):
    """The CLI: exit 2, one line naming the file and key, no traceback."""
    from alignkit.cli.main import main

    d = base()
    d["methods"]["dpo"]["label_smoothing"] = 0.1
    path = write(tmp_path, d)
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith(f"alignkit plan: error: {path}:")
    assert "methods.dpo.label_smoothing: the sigmoid loss ignores label_smoothing" in err[0]
    assert "loss_type: robust" in err[0]
