"""Plan-time checks for what a train or eval job would otherwise find (issue 21 item 9): PEFT's
`all-linear` (string or list) accepted and handed to PEFT as the string it expands; a global batch
that does not divide over nodes x GPUs x per-device batch; an lm-eval metric the task's YAML does not
declare; the text plan's nodes per stage. Each refusal: exit 2, one line naming the file and key."""

from __future__ import annotations

import pytest

from alignkit.cli.main import main
from alignkit.contract.methods import LoraFields
from tests.unit.spec_fixtures import base, write


def _spec(**dpo) -> dict:
    d = base()
    d.pop("merges")
    d["methods"]["dpo"].update(dpo)
    d["grid"] = {"model": ["m1"], "dataset": ["hh"], "preference": ["helpful"], "method": ["dpo"],
                 "peft": ["lora"], "seed": [0]}
    return d


def _plan(tmp_path, spec: dict, capsys, *extra) -> tuple[int, str, list[str]]:
    path = write(tmp_path, spec)
    code = main(["plan", str(path), "-o", str(tmp_path / "out"), *extra])
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert not any("Traceback" in line for line in err)
    return code, cap.out, err


@pytest.mark.parametrize("modules", ["all-linear", ["all-linear"]])
def test_all_linear_plans_and_reaches_peft_as_its_string(tmp_path, capsys, modules):
    lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": modules}
    code, out, err = _plan(tmp_path, _spec(lora=lora), capsys, "--json")
    assert code == 0, err
    peft = pytest.importorskip("peft")
    from jobs.train.stage import lora_config

    cfg = lora_config(LoraFields(8, 16, 0.0, modules if isinstance(modules, str) else tuple(modules)))
    assert cfg.target_modules == peft.utils.INCLUDE_LINEAR_LAYERS_SHORTHAND == "all-linear"


def test_all_linear_expands_to_every_linear_layer_of_a_model():
    pytest.importorskip("torch")
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from jobs.train.stage import lora_config

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    wrapped = get_peft_model(model, lora_config(LoraFields(4, 8, 0.0, ("all-linear",))))
    names = {n.rsplit(".", 1)[-1] for n, m in wrapped.named_modules() if hasattr(m, "lora_A")}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # not lm_head


def test_all_linear_beside_module_names_is_refused(tmp_path, capsys):
    lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["all-linear", "q_proj"]}
    code, _, err = _plan(tmp_path, _spec(lora=lora), capsys)
    assert code == 2 and len(err) == 1 and "methods.dpo.lora.target_modules: 'all-linear' already names" in err[0]


def test_a_global_batch_that_does_not_divide_over_the_world_is_refused(tmp_path, capsys):
    d = _spec(batch_size=16, per_device_batch_size=4)
    d["resources"] = {"train": {"gpus": 4, "nodes": 2}}
    code, _, err = _plan(tmp_path, d, capsys)
    assert code == 2 and len(err) == 1, err
    assert "spec.yaml:" in err[0] and "methods.dpo.batch_size: global batch 16 does not divide over nodes x GPUs x " \
                                      "per_device_batch_size = 2 x 4 x 4 = 32" in err[0]
    assert not (tmp_path / "out").exists()
    d["methods"]["dpo"]["batch_size"] = 32
    code, out, err = _plan(tmp_path, d, capsys)
    assert code == 0, err
    assert "nodes=2 gpus=4" in out  # the text plan shows nodes per stage


def test_an_lm_eval_metric_the_task_does_not_declare_is_refused(tmp_path, capsys):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mine.yaml").write_text("task: mine\ncustom_dataset: !function x.load\nmetric_list:\n"
                                     "  - metric: acc\n    aggregation: mean\n  - metric: acc_norm\n")
    d = _spec()
    d["evals"]["benchmarks"] = {"mine": {"type": "lm_eval", "task": "mine", "include_path": "tasks",
                                         "metric": "exact_match"}}
    code, _, err = _plan(tmp_path, d, capsys)
    assert code == 2 and len(err) == 1, err
    assert "evals.benchmarks.mine.metric: task 'mine' does not produce 'exact_match' (its YAML declares: acc, " \
           "acc_norm)" in err[0]
    d["evals"]["benchmarks"]["mine"]["metric"] = "acc_norm"
    assert _plan(tmp_path, d, capsys)[0] == 0


def test_the_installed_ifeval_task_is_read_without_running_it(tmp_path, capsys):
    pytest.importorskip("lm_eval")
    d = _spec()
    d["evals"]["benchmarks"] = {"ifeval": {"type": "lm_eval", "task": "ifeval", "metric": "acc"}}
    code, _, err = _plan(tmp_path, d, capsys)
    assert code == 2 and any("task 'ifeval' does not produce 'acc'" in line and "prompt_level_strict_acc" in line
                             for line in err), err
