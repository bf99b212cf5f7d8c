"""Issue 14's methods on the registry (alignkit/plugins/methods/kto.py, orpo.py, cpo.py): parsed by `type:`,
defaults written into config.json, one-line spec errors naming the key, the cross-section
refusals, the TRL configs they build, and KTO's unpaired rows. Training: test_train_methods.py."""

from __future__ import annotations

import pytest

from alignkit.plan.compiler import load_plan
from alignkit.contract import parse
from alignkit.contract.errors import SpecError
from alignkit.plugins.methods import METHODS, method
from alignkit.contract.methods import LoraFields
from alignkit.plugins.methods.cpo import CPOFields
from alignkit.plugins.methods.kto import KTOFields
from alignkit.plugins.methods.orpo import ORPOFields
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.written import written

LORA = {"r": 8, "alpha": 16, "target_modules": ["q_proj"]}
NEW = {
    "kto": {"type": "kto", "learning_rate": 5e-6, "lora": LORA},
    "orpo": {"type": "orpo", "learning_rate": 8e-6, "lora": LORA},
    "simpo": {"type": "cpo", "loss_type": "simpo", "beta": 2.0, "cpo_alpha": 0.0, "learning_rate": 1e-6, "lora": LORA},
}


def _spec(mutate=None) -> dict:
    d = base()
    d["methods"].update({k: dict(v, lora=dict(v["lora"], dropout=0.0)) for k, v in NEW.items()})
    d["grid"].update(model=["m1"], dataset=["bt"], preference=["harmless", "helpful"], seed=[0],
                     method=["sft", "dpo", *NEW])
    if mutate:
        mutate(d)
    return d


def _problems(tmp_path, mutate) -> str:
    with pytest.raises(SpecError) as exc:
        load_plan(write(tmp_path, _spec(mutate)))
    return str(exc.value)


def test_new_methods_are_registered_with_their_fields():
    assert {"sft", "dpo", "kto", "orpo", "cpo"} <= set(METHODS.names())
    assert (METHODS.get("kto").fields, METHODS.get("orpo").fields, METHODS.get("cpo").fields) == \
        (KTOFields, ORPOFields, CPOFields)
    assert METHODS.get("kto").reference_model and not METHODS.get("orpo").reference_model
    assert not METHODS.get("cpo").reference_model and not METHODS.get("kto").paired


def test_configs_carry_every_default_explicitly(tmp_path):
    plan = load_plan(write(tmp_path, _spec()))
    cfg = {written(j)["method"]["name"]: written(j)["method"] for j in plan.jobs if j.stage == "train"}
    assert {k: cfg["kto"][k] for k in ("beta", "desirable_weight", "undesirable_weight", "max_prompt_length")} == \
        {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0, "max_prompt_length": 128}
    assert (cfg["orpo"]["beta"], cfg["orpo"]["max_prompt_length"]) == (0.1, 128)
    assert {k: cfg["simpo"][k] for k in ("loss_type", "beta", "simpo_gamma", "cpo_alpha", "label_smoothing")} == \
        {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 0.0, "label_smoothing": 0.0}
    # the old methods' configs are untouched by the new ones (no new key, same values)
    assert "loss_type" not in cfg["dpo"] and "desirable_weight" not in cfg["sft"]


@pytest.mark.parametrize("name, change, message", [
    ("kto", {"per_device_batch_size": 1, "batch_size": 4}, "methods.kto.per_device_batch_size: KTO needs at least 2"),
    ("kto", {"desirable_weight": 0.0}, "methods.kto.desirable_weight: must be positive, got 0.0"),
    ("kto", {"undesirable_weight": -1.0}, "methods.kto.undesirable_weight: must be positive, got -1.0"),
    ("kto", {"max_prompt_length": 600}, "methods.kto.max_prompt_length: 600 must be positive and below max_length"),
    ("kto", {"loss_type": "ipo"}, "methods.kto.loss_type: loss_type is not a KTO setting (methods of type cpo, dpo take it)"),
    ("orpo", {"beta": 0.0}, "methods.orpo.beta: must be positive, got 0.0"),
    ("orpo", {"simpo_gamma": 1.0}, "methods.orpo.simpo_gamma: simpo_gamma is not an ORPO setting (methods of type cpo take it)"),
    ("simpo", {"loss_type": "ipo"}, "methods.simpo.loss_type: unknown value 'ipo' (allowed: sigmoid, simpo)"),
    ("simpo", {"cpo_alpha": -0.5}, "methods.simpo.cpo_alpha: must be zero or more, got -0.5"),
    ("simpo", {"label_smoothing": 0.5}, "methods.simpo.label_smoothing: must be in [0, 0.5), got 0.5"),
    ("simpo", {"loss_type": "sigmoid", "simpo_gamma": 1.0}, "methods.simpo.simpo_gamma: read only by loss_type simpo"),
    ("simpo", {"desirable_weight": 1.0}, "methods.simpo.desirable_weight: desirable_weight is not a CPO setting (methods of type kto take it)"),
])
def test_spec_errors_are_one_line_naming_the_key(tmp_path, name, change, message):
    msg = _problems(tmp_path, lambda d: d["methods"][name].update(change))
    assert message in msg, msg
    line = next(ln for ln in msg.splitlines() if message in ln)
    assert "spec.yaml" in msg and len(line) < 300


@pytest.mark.parametrize("training, message", [
    ({"precompute_ref_log_probs": True}, "training.precompute_ref_log_probs: ORPO has no reference model"),
    ({"deepspeed_stage": 3}, "training.deepspeed_stage: SimPO with QLoRA under ZeRO-3 does not work"),
])
def test_reference_free_methods_refuse_what_cannot_work(tmp_path, training, message):
    assert message in _problems(tmp_path, lambda d: d["training"].update(training))


def test_zero3_qlora_runs_in_float32(tmp_path):
    """In float32 nothing is upcast: ORPO + QLoRA + ZeRO-3 ran with 2 CPU processes (docs/methods.md)."""
    def f32(d):
        d["training"].update(deepspeed_stage=3)
        for m in d["models"].values():
            m["dtype"] = "float32"
    assert load_plan(write(tmp_path, _spec(f32))).jobs


def test_reference_free_refusals_do_not_touch_studies_without_them(tmp_path):
    d = base()
    d["training"].update(precompute_ref_log_probs=True)
    assert load_plan(write(tmp_path, d)).jobs  # SFT/DPO only: nothing refused


def _common(tmp_path) -> dict:
    return {"output_dir": str(tmp_path), "report_to": "none", "bf16": False, "max_length": 96,
            "per_device_train_batch_size": 4}


def test_trl_configs_receive_each_methods_settings(tmp_path):
    lora = LoraFields(r=8, alpha=16, dropout=0.0, target_modules=("q_proj",))
    kto = method("kto").trl_args(KTOFields(type="kto", learning_rate=1e-4, lora=lora, beta=0.2,
                                           desirable_weight=1.33, undesirable_weight=0.5), _common(tmp_path))
    assert type(kto).__name__ == "KTOConfig" and (kto.beta, kto.desirable_weight, kto.undesirable_weight) == \
        (0.2, 1.33, 0.5)
    assert (kto.loss_type, kto.train_sampling_strategy, kto.max_length) == ("kto", "sequential", 96)
    orpo = method("orpo").trl_args(ORPOFields(type="orpo", learning_rate=1e-4, lora=lora, beta=0.25),
                                   _common(tmp_path))
    assert type(orpo).__name__ == "ORPOConfig" and orpo.beta == 0.25 and orpo.remove_unused_columns is False
    simpo = method("cpo").trl_args(CPOFields(type="cpo", learning_rate=1e-4, lora=lora, loss_type="simpo", beta=2.5,
                                             simpo_gamma=1.4, cpo_alpha=0.0), _common(tmp_path))
    assert type(simpo).__name__ == "CPOConfig"
    assert (simpo.loss_type, simpo.beta, simpo.simpo_gamma, simpo.cpo_alpha) == ("simpo", 2.5, 1.4, 0.0)


def _pairs():
    import datasets

    msg = lambda role, text: [{"role": role, "content": text}]  # noqa: E731
    return datasets.Dataset.from_dict({
        "prompt": [msg("user", f"question {i}") for i in range(6)],
        "chosen": [msg("assistant", f"good {i}") for i in range(6)],
        "rejected": [msg("assistant", f"bad {i}") for i in range(6)],
    })


def test_kto_rows_are_one_desirable_and_one_undesirable_per_pair():
    rows = method("kto").rows(_pairs())
    assert len(rows) == 12 and sum(rows["label"]) == 6
    seen = {}
    for r in rows:
        i = r["prompt"][0]["content"].split()[-1]
        seen.setdefault(i, []).append((r["completion"][0]["content"], r["label"]))
    assert {i: sorted(v) for i, v in seen.items()} == {str(i): sorted([(f"good {i}", True), (f"bad {i}", False)])
                                                        for i in range(6)}
    assert rows["label"][:6] != [True] * 6  # mixed, not TRL's all-desirable-first block
    assert method("kto").rows(_pairs())["completion"] == rows["completion"]  # a fixed permutation


def test_examples_fit_max_length_so_trls_collators_never_cut():
    """The trainer sees what preview shows: every example already fits max_length (TRL's KTO collator
    keeps the first max_length tokens; CPO/ORPO cut responses to max_length minus the prompt)."""
    from jobs.train.stage import load_tokenizer
    from tests.fixtures.train_configs import train_config, typed

    cfg = typed(train_config("dpo"))
    tok = load_tokenizer(cfg.model)
    long = lambda role, n: [{"role": role, "content": " ".join(["word"] * n)}]  # noqa: E731
    import datasets

    pairs = datasets.Dataset.from_dict({"prompt": [long("user", 80), long("user", 5)],
                                        "chosen": [long("assistant", 60), long("assistant", 3)],
                                        "rejected": [long("assistant", 10), long("assistant", 200)]})
    kto = method("kto")
    ds, _, _ = kto.examples(kto.rows(pairs), tok, KTOFields(type="kto", learning_rate=1e-4, lora=None,
                                                            max_length=64, max_prompt_length=24))
    assert all(len(e["prompt_ids"]) + len(e["completion_ids"]) <= 64 for e in ds)
    orpo = method("orpo")
    ds, _, _ = orpo.examples(pairs, tok, ORPOFields(type="orpo", learning_rate=1e-4, lora=None, max_length=64,
                                                    max_prompt_length=24))
    for e in ds:
        n = len(e["prompt_input_ids"])
        assert len(e["chosen_input_ids"]) <= 64 and len(e["rejected_input_ids"]) <= 64
        assert e["chosen_labels"][:n] == [-100] * n and e["chosen_input_ids"][:n] == e["prompt_input_ids"]
    view = orpo.decode(ds[1], tok, None)
    assert set(view) == {"prompt", "chosen", "rejected"} and "word" in view["rejected"]


@pytest.mark.parametrize("name", ["kto", "orpo", "simpo"])
def test_preview_shows_what_the_trainer_gets(name):
    """`alignkit preview` on a job of the tiny methods study: the examples the train job builds."""
    from alignkit.cli.preview import preview
    from jobs.train.stage import load_examples
    from tests.plan.test_methods_study import ROOT

    plan = load_plan(ROOT / "sweeps" / "tiny" / "methods.yaml")
    job = next(j for j in plan.jobs if j.stage == "train" and written(j)["axes"]["method"] == name)
    config = parse(written(job), "config.json")  # what jobs/entry.py hands the stage
    out = preview(config, 4)
    data = load_examples(config)
    assert out["rows_kept"] == len(data.dataset) and len(out["examples"]) == 4
    m = method(written(job)["method"]["type"])
    f = config.method
    for i, shown in enumerate(out["examples"]):
        assert {k: v for k, v in shown.items() if k != "row"} == m.decode(data.dataset[i], data.tokenizer, f)
    if name == "kto":
        assert {e["label"] for e in out["examples"]} <= {"desirable", "undesirable"}
        assert 2 * sum(data.dataset["label"]) == len(data.dataset)  # one desirable + one undesirable per pair
    else:
        assert set(out["examples"][0]) == {"row", "prompt", "chosen", "rejected"}
