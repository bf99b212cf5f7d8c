"""Merge job on tiny LoRA adapters: every method, endpoints, QLoRA dequantized base, bad inputs.

Expected results are computed here independently of jobs/merge/stage.py: adapter deltas straight from
the adapter's safetensors (B @ A * alpha / r), dequantized weights straight from bitsandbytes.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mergekit")

from jobs.merge import stage as merge  # noqa: E402
from jobs.errors import JobFailure  # noqa: E402
from jobs.merge.methods import MergeParameterError, parse_spec  # noqa: E402
from tests.unit.train_configs import train_config  # noqa: E402
from tests.unit.train_configs import typed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ASSET = ROOT / "assets" / "tiny-llama"
QUANT = {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "float32",
         "storage_dtype": "bfloat16"}
TARGETS_A = ["q_proj", "v_proj", "k_proj"]
TARGETS_B = ["q_proj", "v_proj", "o_proj"]


# ---------------------------------------------------------------- fixtures and helpers
def _tiny_model(tmp: Path) -> Path:
    """The committed tiny Llama when present, else an equivalent one built offline in `tmp`."""
    if (ASSET / "config.json").exists():
        return ASSET
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp / "tiny-llama"
    words = ["<unk>", "<s>", "<pad>", "</s>"] + [f"w{i}" for i in range(60)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(words), bos_token_id=1, eos_token_id=3,
                      pad_token_id=2, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(out)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>").save_pretrained(out)
    return out


def _model_cfg(model: Path) -> dict[str, Any]:
    return {"name": "tiny-llama", "source": str(model), "revision": "main", "template": "plain",
            "kind": "pretrained", "dtype": "float32"}


def _train_job(jobs: Path, job_id: str, model: Path, seed: int, targets: list[str],
               quantization: dict | None = None) -> Path:
    """A finished train job whose adapter/ is a random, non-zero LoRA adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    d = jobs / job_id
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(base, lora).save_pretrained(d / "adapter")
    peft = "qlora" if quantization else "lora"
    cfg = {**train_config("sft", peft), "model": _model_cfg(model), "peft": {"name": peft, "quantization": quantization},
           "axes": {"model": "tiny-llama", "dataset": "toy", "preference": f"p{seed}", "method": "sft",
                    "peft": peft, "seed": 0}}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "DONE").write_text("1\n")
    return d


def _merge(jobs: Path, job_id: str, model: Path, inputs: list[str], method: str, params: dict) -> Path:
    d = jobs / job_id
    d.mkdir(parents=True)
    cfg = {"stage": "merge", "axes": {"model": "tiny-llama", "seed": 0, "merge": method},
           "model": _model_cfg(model), "merge": {"name": method, "method": method, "parameters": params},
           "inputs": inputs}
    (d / "config.json").write_text(json.dumps(cfg))
    merge.run(d, typed(cfg), threading.Event())
    return d


def _state(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update({k: v.float() for k, v in load_file(f).items()})
    return out


def _deltas(adapter: Path) -> dict[str, Any]:
    """Full-size weight deltas of a LoRA adapter, keyed like the base model's weights."""
    from safetensors.torch import load_file

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    sd = load_file(adapter / "adapter_model.safetensors")
    scale = cfg["lora_alpha"] / cfg["r"]
    out = {}
    for key, a in sd.items():
        if ".lora_A." in key:
            b = sd[key.replace(".lora_A.", ".lora_B.")]
            name = key.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")
            out[name] = (b.float() @ a.float()) * scale
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merge")
    model = _tiny_model(tmp)
    jobs = tmp / "jobs"
    a = _train_job(jobs, "aaaaaaaaaaaa", model, 1, TARGETS_A)
    b = _train_job(jobs, "bbbbbbbbbbbb", model, 2, TARGETS_B)
    c = _train_job(jobs, "cccccccccccc", model, 3, TARGETS_A)
    base = _state(model)
    return {"model": model, "jobs": jobs, "base": base, "ids": ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"],
            "d": [_deltas(x / "adapter") for x in (a, b, c)]}


def _full(base: dict, *terms: tuple[float, dict]) -> dict:
    out = {k: v.clone() for k, v in base.items()}
    for w, d in terms:
        for k, v in d.items():
            out[k] += w * v
    return out


def _assert_close(got: dict, want: dict, atol: float = 1e-5) -> None:
    assert set(got) == set(want)
    worst = max((got[k] - want[k]).abs().max().item() for k in want)
    assert worst <= atol, worst


# ---------------------------------------------------------------- parameters (no model)
def test_parse_spec_defaults_and_errors():
    s = parse_spec("dare_ties", {"weights": [0.3, 0.7]}, 2)
    assert s.resolved_parameters() == {"weights": [0.3, 0.7], "density": [0.5, 0.5]}
    assert parse_spec("slerp", None, 2).t == 0.5
    assert parse_spec("ties", {"density": [0.2, 0.4, 0.6]}, 3).weights == (1 / 3,) * 3
    for method, params, n, key in [("slerp", {"t": 0.5}, 3, "exactly 2"), ("slerp", {"t": 1.5}, 2, "t"),
                                   ("dare_ties", {"density": [0.5]}, 2, "density"),
                                   ("ties", {"density": 0}, 2, "density[0]"), ("bogus", {}, 2, "merge.method"),
                                   ("linear", {"density": 0.5}, 2, "density"),
                                   ("linear", {"weights": [1, -1]}, 2, "sum to 0"),
                                   ("task_arithmetic", {"weights": "x"}, 2, "weights")]:
        with pytest.raises(MergeParameterError, match=key.replace("[", r"\[").replace("]", r"\]")):
            parse_spec(method, params, n)


# ---------------------------------------------------------------- every method on tiny adapters
@pytest.mark.slow
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_slerp_endpoints(study, t):
    d = _merge(study["jobs"], f"slerp{int(t)}", study["model"], study["ids"][:2], "slerp", {"t": t})
    end = study["d"][0] if t == 0.0 else study["d"][1]
    _assert_close(_state(d / "model"), _full(study["base"], (1.0, end)))


@pytest.mark.slow
def test_slerp_midpoint_is_between_and_not_linear(study):
    d = _merge(study["jobs"], "slerp-mid", study["model"], study["ids"][:2], "slerp", {"t": 0.5})
    got = _state(d / "model")
    a, b = _full(study["base"], (1.0, study["d"][0])), _full(study["base"], (1.0, study["d"][1]))
    k = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(got[k], a[k]) and not torch.allclose(got[k], b[k])
    assert not torch.allclose(got[k], (a[k] + b[k]) / 2, atol=1e-7)  # spherical, not linear
    # Weights neither adapter touches stay the base's.
    assert torch.equal(got["model.layers.0.mlp.up_proj.weight"], study["base"]["model.layers.0.mlp.up_proj.weight"])


@pytest.mark.slow
def test_linear_weights_one_zero_is_first_input(study):
    d = _merge(study["jobs"], "lin10", study["model"], study["ids"][:2], "linear", {"weights": [1, 0]})
    _assert_close(_state(d / "model"), _full(study["base"], (1.0, study["d"][0])))


@pytest.mark.slow
def test_task_arithmetic_three_inputs(study):
    w = [0.5, 1.0, -0.25]
    d = _merge(study["jobs"], "ta", study["model"], study["ids"], "task_arithmetic", {"weights": w})
    _assert_close(_state(d / "model"), _full(study["base"], *zip(w, study["d"], strict=True)))


@pytest.mark.slow
def test_dare_linear_full_density_is_task_arithmetic(study):
    d = _merge(study["jobs"], "darelin1", study["model"], study["ids"][:2], "dare_linear",
               {"weights": [0.5, 0.5], "density": 1.0})
    _assert_close(_state(d / "model"), _full(study["base"], (0.5, study["d"][0]), (0.5, study["d"][1])))


@pytest.mark.slow
def test_ties_full_density_is_sign_consensus_mean(study):
    d = _merge(study["jobs"], "ties1", study["model"], study["ids"][:2], "ties", {"weights": [1, 1], "density": 1.0})
    got = _state(d / "model")
    k = "model.layers.1.self_attn.v_proj.weight"  # touched by both adapters
    da, db = study["d"][0][k], study["d"][1][k]
    sign = torch.where(da + db >= 0, 1.0, -1.0)
    keep_a, keep_b = (da.sign() == sign).float(), (db.sign() == sign).float()
    want = study["base"][k] + (da * keep_a + db * keep_b) / (keep_a + keep_b).clamp(min=1)
    assert (got[k] - want).abs().max().item() < 1e-5
    assert not torch.allclose(got[k], study["base"][k] + (da + db) / 2, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dare_ties", "dare_linear"])
def test_dare_drops_about_density_of_each_delta(study, method):
    d = _merge(study["jobs"], f"{method}-half", study["model"], study["ids"][:2], method,
               {"weights": [1.0, 1.0], "density": 0.5})
    got = _state(d / "model")
    k = "model.layers.0.self_attn.k_proj.weight"  # only adapter A touches k_proj
    delta, da = got[k] - study["base"][k], study["d"][0][k]
    kept = delta.abs() > 1e-9
    assert 0.35 < kept.float().mean().item() < 0.65
    assert torch.equal(delta[kept].sign(), da[kept].sign())
    # DARE rescales the survivors (mergekit: to the original L1 norm), so they are not the raw delta.
    assert not torch.allclose(delta[kept], da[kept], atol=1e-6)


@pytest.mark.slow
def test_dare_is_reproducible_per_seed(study):
    a = _merge(study["jobs"], "dare-r1", study["model"], study["ids"], "dare_ties", {"density": 0.5})
    b = _merge(study["jobs"], "dare-r2", study["model"], study["ids"], "dare_ties", {"density": 0.5})
    _assert_close(_state(a / "model"), _state(b / "model"), atol=0.0)


@pytest.mark.slow
def test_output_loads_like_any_model_and_records_inputs(study):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = _merge(study["jobs"], "rec", study["model"], study["ids"][:2], "dare_ties", {"density": 0.7})
    tok = AutoTokenizer.from_pretrained(d / "model")
    m = AutoModelForCausalLM.from_pretrained(d / "model")
    with torch.no_grad():
        assert torch.isfinite(m(**tok("hello there", return_tensors="pt")).logits).all()
    rec = json.loads((d / "merge.json").read_text())
    assert rec["method"] == "dare_ties" and rec["parameters"] == {"weights": [0.5, 0.5], "density": [0.7, 0.7]}
    assert [x["job"] for x in rec["inputs"]] == study["ids"][:2]
    assert rec["inputs"][0]["adapter_sha256"] == merge.adapter_sha256(study["jobs"] / study["ids"][0] / "adapter")
    assert rec["inputs"][0]["axes"]["preference"] == "p1"
    assert rec["base"]["task_vector_base"] is True and rec["timings"]["total_s"] > 0
    assert not (d / ".merge-work").exists()


# ---------------------------------------------------------------- QLoRA: dequantized base
@pytest.mark.slow
def test_qlora_adapters_merge_into_dequantized_base(study, tmp_path):
    import bitsandbytes as bnb

    jobs = tmp_path / "jobs"
    _train_job(jobs, "qa", study["model"], 1, TARGETS_A, quantization=QUANT)
    _train_job(jobs, "qb", study["model"], 2, TARGETS_B, quantization=QUANT)
    d = _merge(jobs, "qlin", study["model"], ["qa", "qb"], "linear", {"weights": [1, 0]})
    got = _state(d / "model")
    deq = {}
    for k, w in study["base"].items():
        if k.endswith("_proj.weight"):  # the Linear layers bitsandbytes quantizes
            q, st = bnb.functional.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4",
                                                 quant_storage=torch.bfloat16)
            deq[k] = bnb.functional.dequantize_4bit(q, st).float()
        else:
            deq[k] = w
    _assert_close(got, _full(deq, (1.0, study["d"][0])))
    k = "model.layers.0.self_attn.q_proj.weight"
    assert (got[k] - (study["base"][k] + study["d"][0][k])).abs().max() > 1e-3  # not the original base
    assert "dequantized nf4" in json.loads((d / "merge.json").read_text())["base"]["how"]


# ---------------------------------------------------------------- bad inputs: one-line failures
@pytest.mark.slow
def test_bad_inputs_fail_with_one_line(study, tmp_path):
    jobs = study["jobs"]
    with pytest.raises(JobFailure, match="exactly 2"):
        _merge(jobs, "bad1", study["model"], study["ids"], "slerp", {"t": 0.5})
    with pytest.raises(JobFailure, match="has not finished"):
        _merge(jobs, "bad2", study["model"], [study["ids"][0], "notthereyet"], "linear", {})
    _train_job(jobs, "qq", study["model"], 4, TARGETS_A, quantization=QUANT)
    with pytest.raises(JobFailure, match="different quantization"):
        _merge(jobs, "bad3", study["model"], [study["ids"][0], "qq"], "ties", {})
    half = _train_job(jobs, "half", study["model"], 5, TARGETS_A)
    cfg = json.loads((half / "config.json").read_text())
    cfg["model"]["dtype"] = "bfloat16"
    (half / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(JobFailure, match=r"different base weights \(base in bfloat16 vs base in float32\)"):
        _merge(jobs, "bad5", study["model"], [study["ids"][0], "half"], "linear", {})
    other = json.loads((jobs / study["ids"][1] / "config.json").read_text())
    other["model"]["source"] = "/elsewhere/other-model"
    (jobs / "ddd").mkdir()
    (jobs / "ddd" / "config.json").write_text(json.dumps(other))
    (jobs / "ddd" / "DONE").write_text("1")
    import shutil

    shutil.copytree(jobs / study["ids"][1] / "adapter", jobs / "ddd" / "adapter")
    with pytest.raises(JobFailure, match="trained on model.source"):
        _merge(jobs, "bad4", study["model"], [study["ids"][0], "ddd"], "linear", {})
