"""Issue 25 item 11: vLLM only when asked, and then only after it agrees with HF.

vLLM cannot be installed on the CPU dev box, so CI never runs the engine itself: these tests drive
jobs.eval.generate.VLLMGenerator with a stand-in engine injected through its `llm`/`sampling_params`
seam (what vLLM's LLM.generate is called with, and a reply of vLLM's shape), and the agreement
check with real HF answers from the tiny model on one side."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from alignkit.plan.compiler import load_plan
from alignkit.contract.errors import SpecError
from jobs.errors import JobFailure
from jobs.eval.generate import CheckedVLLM, HFGenerator, VLLMGenerator, agreement, check_agreement, prompt_ids
from tests.fixtures.eval_fixtures import TINY
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.written import written


class FakeEngine:
    """vLLM's LLM.generate as far as VLLMGenerator uses it: token-id prompts, one SamplingParams each,
    outputs[0].text per request. It answers with `answer(ids, params)`."""

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def generate(self, requests, params, lora_request=None, use_tqdm=True):
        self.calls.append((requests, params, lora_request))
        return [SimpleNamespace(outputs=[SimpleNamespace(text=self.answer(r["prompt_token_ids"], p))])
                for r, p in zip(requests, params, strict=True)]


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TINY)
    tok.pad_token = tok.pad_token or tok.eos_token
    return AutoModelForCausalLM.from_pretrained(TINY).eval(), tok


PROMPTS = ["Tell me about the moon.", "What is 2 plus 2?", "Name a colour.", "Why is the sky blue?"]


def _engine_as_hf(model, tok):
    """A stand-in that answers exactly as HF greedy decoding does (a correct engine)."""
    hf = HFGenerator(model, tok, "cpu")
    return lambda ids, p: hf.generate([tok.decode(ids, skip_special_tokens=True)], p.max_tokens)[0]


def test_vllm_generator_sends_exact_ids_and_per_prompt_budgets(tiny):
    model, tok = tiny
    engine = FakeEngine(lambda ids, p: f"n={len(ids)}")
    gen = VLLMGenerator("unused", None, "float32", 8, False, tok, context=12, llm=engine,
                        sampling_params=SimpleNamespace)
    long = "one two three four five six seven eight nine ten eleven twelve"
    outs = gen.generate(["Hi", long], 8)
    (requests, params, _), = engine.calls
    assert [r["prompt_token_ids"] for r in requests] == [prompt_ids(tok, "Hi")]  # the long one: no room
    assert params[0].max_tokens == min(8, 12 - len(prompt_ids(tok, "Hi"))) and params[0].temperature == 0.0
    assert outs == [f"n={len(prompt_ids(tok, 'Hi'))}", ""]


def test_agreement_passes_for_an_engine_that_matches_hf_and_is_recorded(tiny):
    model, tok = tiny
    hf = HFGenerator(model, tok, "cpu")
    vllm = VLLMGenerator("unused", None, "float32", 8, False, tok, context=512,
                         llm=FakeEngine(_engine_as_hf(model, tok)), sampling_params=SimpleNamespace)
    checked = CheckedVLLM(vllm, hf, prompts=3, threshold=0.9)
    checked.set_checkpoint("final", None)
    outs = checked.generate(PROMPTS, 6)
    assert checked.agreement["final"] == {"prompts": 3, "exact_match": 1.0, "threshold": 0.9, "max_new_tokens": 6}
    assert outs == hf.generate(PROMPTS, 6)
    checked.generate(PROMPTS, 6)  # a second benchmark at the same checkpoint: not checked again
    assert len(vllm.llm.calls) == 3  # agreement (3 prompts) + two full generations


def test_agreement_below_the_threshold_fails_the_job_with_the_reason(tiny):
    model, tok = tiny
    right = _engine_as_hf(model, tok)
    # wrong on two of the four prompts (as a wrong template or a missing adapter would be)
    wrong = FakeEngine(lambda ids, p: "something else" if tok.decode(ids).endswith(("moon.", "colour."))
                       else right(ids, p))
    vllm = VLLMGenerator("unused", None, "float32", 8, False, tok, context=512, llm=wrong,
                         sampling_params=SimpleNamespace)
    checked = CheckedVLLM(vllm, HFGenerator(model, tok, "cpu"), prompts=4, threshold=0.9)
    checked.set_checkpoint("100", None)
    share = agreement(HFGenerator(model, tok, "cpu").generate(PROMPTS, 6), vllm.generate(PROMPTS, 6))
    assert 0 < share < 0.9
    with pytest.raises(JobFailure, match=rf"generation.backend vllm: its greedy answers match HF's on "
                                         rf"{share:.0%} of the first 4 prompts, below agreement_threshold 0.9"):
        checked.generate(PROMPTS, 6)


def test_agreement_share_is_exact_match():
    assert agreement(["a", "b ", "c", "d"], ["a", "b", "x", "y"]) == 0.5
    assert check_agreement(SimpleNamespace(generate=lambda p, n: p), SimpleNamespace(generate=lambda p, n: p),
                           ["x", "y"], 5, 10, 1.0)["exact_match"] == 1.0


def _plan(tmp_path, generation):
    d = base()
    if generation is not None:
        d["evals"]["generation"] = generation
    return load_plan(write(tmp_path, d))


def test_the_default_is_hf_and_leaves_eval_configs_and_ids_alone(tmp_path):
    plain = _plan(tmp_path, None)
    evals = [j for j in plain.jobs if j.stage == "eval"]
    assert evals and all("generation" not in written(j) for j in evals)
    hf = _plan(tmp_path, {"backend": "hf"})
    assert {j.id for j in hf.jobs if j.stage == "train"} == {j.id for j in plain.jobs if j.stage == "train"}
    vllm = _plan(tmp_path, {"backend": "vllm", "agreement_prompts": 8})
    cfg = next(written(j) for j in vllm.jobs if j.stage == "eval")
    assert cfg["generation"] == {"backend": "vllm", "agreement_prompts": 8, "agreement_threshold": 0.9}


@pytest.mark.parametrize("generation, message", [
    ({"backend": "auto"}, "evals.generation.backend: unknown value 'auto'"),
    ({"backend": "vllm", "agreement_threshold": 0}, "evals.generation.agreement_threshold: must be in (0, 1]"),
    ({"backend": "vllm", "agreement_prompts": 0}, "evals.generation.agreement_prompts: must be 1 or more"),
])
def test_generation_spec_checks(tmp_path, generation, message):
    with pytest.raises(SpecError) as exc:
        _plan(tmp_path, generation)
    assert message in str(exc.value)


def test_auto_no_longer_switches_and_vllm_without_vllm_fails(tiny, tmp_path):
    from alignkit.contract.eval import GenerationConfig
    from jobs.base_weights import of_model
    from jobs.eval.stage import _make_generator

    model, tok = tiny
    from alignkit.contract.common import ModelConfig

    bw = of_model(ModelConfig(name="tiny", source=str(TINY), revision=None, dtype="float32"))
    for cfg in (None, GenerationConfig(), GenerationConfig(backend="auto")):
        assert _make_generator("base", bw, tok, model, "cpu", {}, cfg, tmp_path).name == "hf"
    with pytest.raises(JobFailure, match="generation.backend: vllm is asked for but"):
        _make_generator("base", bw, tok, model, "cpu", {}, GenerationConfig(backend="vllm"), tmp_path)
