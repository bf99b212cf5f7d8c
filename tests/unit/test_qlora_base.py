"""QLoRA targets are evaluated on the base they were trained on (issue 11 item 5).

Must show: a tiny QLoRA adapter trained by the train job, evaluated through the eval job's loading
path and merged by the merge job (then loaded as the eval job loads a merged target), gives the same
logits to 1e-5; on the plain base (what eval used before) it does not. A run set with a LoRA and a
QLoRA target of one base model loads the right base for each.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from jobs import base_weights
from jobs.errors import JobFailure
from tests.unit.eval_fixtures import benchmarks, make_adapter
from tests.unit.train_configs import TINY, train_config
from tests.unit.train_configs import typed

QUANT = {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16", "storage_dtype": "bfloat16"}
MODEL = {"name": "tiny-llama", "source": str(TINY), "revision": "main", "dtype": "bfloat16"}


def _train(quant=None, model=MODEL, typed_=True):
    """A train config on `model`, QLoRA with `quant` (else LoRA): typed, or the dict config.json holds."""
    c = dict(train_config("sft", "qlora" if quant else "lora"), model=dict(model),
             peft={"name": "qlora" if quant else "lora", "quantization": quant})
    return typed(c) if typed_ else c


def _model(model_cfg: dict):
    from alignkit.contract.common import ModelConfig

    return ModelConfig(**model_cfg)


def test_base_weights_of_lora_and_qlora_train_configs(tmp_path):
    lora = base_weights.of_train_config(_train())
    assert lora == base_weights.BaseWeights(str(TINY), "main", "bfloat16")
    assert lora.describe() == "base in bfloat16"
    qlora = base_weights.of_train_config(_train(QUANT))
    assert (qlora.dtype, qlora.load_dtype, qlora.quantization["quant_type"]) == ("bfloat16", "bfloat16", "nf4")
    # What a CPU run substituted (train_metrics.json) is what the weights were made with.
    subs = [{"key": "model.dtype", "configured": "bfloat16", "used": "float32"},
            {"key": "peft.quantization.compute_dtype", "configured": "bfloat16", "used": "float32"},
            {"key": "method.optimizer", "configured": "paged_adamw_32bit", "used": "adamw_torch"}]
    cpu = base_weights.of_train_config(_train(QUANT), subs)
    assert (cpu.dtype, cpu.load_dtype) == ("float32", "float32")
    assert cpu.describe() == "dequantized nf4 4-bit base (loaded in float32) in float32"
    d = tmp_path / "tr"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(_train(dict(QUANT, compute_dtype="int8"), typed_=False)))
    with pytest.raises(JobFailure, match=r"tr/config.json: peft.quantization.compute_dtype: unknown value 'int8'"):
        base_weights.of_train_job(d)
    with pytest.raises(JobFailure, match=r"the train job's config: .*nope/config.json: cannot read"):
        base_weights.of_train_job(tmp_path / "nope")


def _logits(model, tok) -> "torch.Tensor":  # noqa: F821
    import torch

    from jobs.eval.stage import PROBE_TEXT

    enc = tok(PROBE_TEXT, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits.double()


def _eval_model(sweep: Path, kind: str, target: str, ckpt: str, model_cfg: dict):
    """The model the eval job runs for one checkpoint of a target, via its own loading functions."""
    from jobs.eval import stage as evaluate

    job_dir = sweep / "jobs" / "ev-probe"
    cfg = typed({"stage": "eval", "model": model_cfg, "target": {"job": target, "kind": kind}, "benchmarks": {}})
    paths = {ckpt: evaluate.checkpoint_dir(sweep / "jobs" / target, kind, ckpt)}
    bw = evaluate.target_base(kind, cfg, job_dir, paths)
    model = base_weights.load(bw, "cpu")
    if kind == "adapter":
        model = evaluate.AdapterSlot(model).swap(ckpt, paths[ckpt])
    return model, evaluate.load_tokenizer(cfg.model, bw.source), bw


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory):
    """A tiny QLoRA SFT run (jobs.train.stage on CPU: float32 substituted for bf16, as recorded)."""
    from jobs.entry import run_job

    sweep = tmp_path_factory.mktemp("qlora")
    tr = sweep / "jobs" / "qtr"
    tr.mkdir(parents=True)
    tc = train_config("sft", "qlora", max_steps=2, save_steps=1)
    (tr / "config.json").write_text(json.dumps(tc))
    assert run_job(tr) == "done"
    return sweep, tc


@pytest.mark.slow
def test_qlora_target_evaluated_and_merged_gives_the_same_logits(qlora_run):
    from jobs.merge import stage as merge

    sweep, tc = qlora_run
    model, tok, bw = _eval_model(sweep, "adapter", "qtr", "final", tc["model"])
    assert bw.quantization and bw.dtype == "float32"  # the CPU run's substitution, read from train_metrics.json
    evaluated = _logits(model, tok)

    mg = sweep / "jobs" / "qmg"
    mg.mkdir()
    mcfg = {"stage": "merge", "axes": {"model": "tiny-llama", "seed": 0, "merge": "linear"}, "model": tc["model"],
            "merge": {"name": "linear", "method": "linear", "parameters": {"weights": [1.0]}},
            "inputs": ["qtr"]}
    (mg / "config.json").write_text(json.dumps(mcfg))
    merge.run(mg, typed(mcfg), threading.Event())
    rec = json.loads((mg / "merge.json").read_text())
    assert rec["base"] == dict(bw.record(), task_vector_base=False) and rec["dtype"] == "float32"
    merged_model, merged_tok, _ = _eval_model(sweep, "merged", "qmg", "final", tc["model"])
    merged = _logits(merged_model, merged_tok)
    diff = (evaluated - merged).abs().max().item()
    assert diff <= 1e-5, diff

    # The plain base (what the eval job loaded for QLoRA targets before) is another model: the
    # adapter's effect on it is mixed with a base change far larger than the tolerance.
    from peft import PeftModel

    plain = base_weights.load(base_weights.of_model(_model(dict(tc["model"], dtype="float32"))), "cpu")
    on_plain = _logits(PeftModel.from_pretrained(plain, str(sweep / "jobs" / "qtr" / "adapter")), tok)
    assert (on_plain - merged).abs().max().item() > 1e-2


@pytest.mark.slow
def test_run_set_with_lora_and_qlora_targets_loads_each_its_base(qlora_run):
    """Two eval jobs of one base model: the QLoRA target (two checkpoints, adapter swap) on the
    dequantized base, the LoRA target on the plain base; both recorded in eval.json."""
    import torch
    from peft import PeftModel

    from jobs.eval import stage as evaluate

    sweep, tc = qlora_run
    lo = sweep / "jobs" / "ltr"
    make_adapter(lo / "adapter", seed=7)
    (lo / "config.json").write_text(json.dumps(dict(train_config("sft", "lora"), model=tc["model"])))
    bench = {"mmlu": benchmarks(safety=False)["mmlu"]}
    got = {}
    for target, ckpts in (("qtr", ["1", "final"]), ("ltr", ["final"])):
        d = sweep / "jobs" / f"ev-{target}"
        d.mkdir()
        cfg = {"stage": "eval", "axes": {}, "model": tc["model"], "target": {"job": target, "kind": "adapter"},
               "checkpoints": ckpts, "benchmarks": bench}
        evaluate.run(d, typed(cfg), threading.Event())
        got[target] = json.loads((d / "eval.json").read_text())
    q, lora = got["qtr"]["provenance"], got["ltr"]["provenance"]
    assert q["base_weights"]["how"] == "dequantized nf4 4-bit base (loaded in float32) in float32"
    assert lora["base_weights"] == dict(base_weights.of_model(_model(tc["model"])).record())
    assert lora["base_weights"]["quantization"] is None and lora["base_weights"]["dtype"] == "bfloat16"
    assert list(got["qtr"]["checkpoints"]) == ["1", "final"]
    assert all(c["guard_max_logit_diff"] > 0 for c in q["checkpoints"].values())

    # The LoRA target's eval model is the adapter on the stored weights, as a fresh PEFT load gives.
    model, tok, _ = _eval_model(sweep, "adapter", "ltr", "final", tc["model"])
    fresh = PeftModel.from_pretrained(base_weights.load(base_weights.of_model(_model(tc["model"])), "cpu"),
                                      str(lo / "adapter"))
    torch.testing.assert_close(_logits(model, tok), _logits(fresh, tok), rtol=0, atol=0)


def test_eval_config_naming_another_base_than_the_target_fails(tmp_path):
    from jobs.eval import stage as evaluate

    tr = tmp_path / "jobs" / "tr"
    tr.mkdir(parents=True)
    (tr / "config.json").write_text(json.dumps(_train(QUANT, typed_=False)))
    cfg = typed({"stage": "eval", "model": dict(MODEL, source="/models/other"),
                 "target": {"job": "tr", "kind": "adapter"}, "benchmarks": {}})
    with pytest.raises(JobFailure, match=r"config.json model: '/models/other' .* is not the base target tr was trained on"):
        evaluate.target_base("adapter", cfg, tmp_path / "jobs" / "ev", {"final": tr / "adapter"})


@pytest.mark.slow
@pytest.mark.parametrize("load,compute", [("bfloat16", "float32"), ("float32", "bfloat16"), ("float32", "float32")])
def test_dequantized_weights_are_what_the_4bit_forward_multiplies_by(load, compute):
    """Every 4-bit layer of the base loaded as training loads it (bitsandbytes' own forward) gives
    exactly F.linear with the weight base_weights.load produced, for every load/compute dtype pair
    (bf16 load + fp32 compute is where transformers' plain dequantize would round twice)."""
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM

    bw = base_weights.of_train_config(_train(dict(QUANT, compute_dtype=compute), dict(MODEL, dtype=load)))
    four_bit = AutoModelForCausalLM.from_pretrained(
        str(TINY), dtype=getattr(torch, load), quantization_config=base_weights._bnb_config(bw.quantization),
        device_map={"": "cpu"})
    deq = dict(base_weights.load(bw, "cpu").named_modules())
    torch.manual_seed(0)
    layers = [(n, m) for n, m in four_bit.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 14
    for name, layer in layers:
        layer.support_avx512bf16_for_cpu = False  # as jobs/train/stage.py: the training (unpacked) path
        x = torch.randn(3, layer.in_features, dtype=getattr(torch, compute))
        with torch.no_grad():
            want = layer(x)
            got = torch.nn.functional.linear(x, deq[name].weight)
        assert deq[name].weight.dtype == getattr(torch, compute)
        assert torch.equal(got, want), name
