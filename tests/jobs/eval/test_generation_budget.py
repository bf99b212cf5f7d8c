"""Issue 25 item 8: a prompt is never cut to make room for new tokens (jobs/eval/generate.py).

Each prompt's budget is min(max_new_tokens, context - prompt tokens); the generator sees every
prompt token, a prompt that alone fills the context gets no answer, and the eval.json entry counts
the capped answers. Before this, the HF path left-truncated prompts to max(8, context - max_new),
so a 2048-context model with max_new_tokens 2048 saw only each prompt's last 8 tokens."""

from __future__ import annotations

import pytest

from jobs.eval.generate import Budgets, HFGenerator, budget, budgets, context_length, generate_all, prompt_ids
from tests.fixtures.eval_fixtures import TINY


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jobs.data.templates import apply_template

    tok = AutoTokenizer.from_pretrained(TINY)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    from alignkit.contract.common import ModelConfig

    apply_template(tok, ModelConfig(source="tiny", template="vicuna", name="tiny"))  # the jobs take typed configs
    return AutoModelForCausalLM.from_pretrained(TINY).eval(), tok


def test_budget_rule():
    assert budget(100, 2048, 2048) == 1948  # the paper's 2048-context models: the context decides
    assert budget(100, 500, 2048) == 500  # room enough: max_new_tokens
    assert budget(2048, 500, 2048) == 0 and budget(3000, 500, 2048) == 0  # no room: no answer
    assert budget(10 ** 6, 500, None) == 500  # unknown context: nothing to cap
    assert context_length({"max_position_embeddings": 2048}) == 2048
    assert context_length({"n_positions": 1024}) == 1024 and context_length({}) is None
    b = Budgets(20, 30, [20, 5, 0, 20])
    assert b.record() == {"capped": 2, "no_room": 1, "context": 30, "min_budget": 0}


class _Spy:
    """The tiny model's generate, recording what it was given."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, **kw):
        self.calls.append((kw["input_ids"].clone(), kw["attention_mask"].clone(), kw["max_new_tokens"]))
        return self.model.generate(**kw)


def test_hf_generator_keeps_every_prompt_token_and_caps_the_budget(tiny, monkeypatch):
    model, tok = tiny
    short, long = "Hi.", "Tell me everything about the moon, the sun and the stars, in detail. " * 3
    prompts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
               for p in (short, long)]
    ids = [prompt_ids(tok, p) for p in prompts]
    assert ids[0][0] == tok.bos_token_id and ids[0][1] != tok.bos_token_id  # one BOS, from the template
    context = len(ids[1]) + 6  # the long prompt leaves room for 6 new tokens
    monkeypatch.setattr(model.config, "max_position_embeddings", context)
    spy = _Spy(model)
    gen = HFGenerator(spy, tok, "cpu")
    outs, record = generate_all(gen, tok, prompts, 20)
    assert record == {"capped": 1, "no_room": 0, "context": context, "min_budget": 6}
    by_budget = {new: (inp, mask) for inp, mask, new in spy.calls}
    assert set(by_budget) == {6, 20}  # one batch per budget
    for (inp, mask), want in ((by_budget[6], ids[1]), (by_budget[20], ids[0])):
        assert inp[0][mask[0].bool()].tolist() == want  # the whole prompt, nothing cut
    assert len(tok(outs[1], add_special_tokens=False)["input_ids"]) <= 6
    # the same answers one prompt at a time: batching by budget changes nothing
    assert [HFGenerator(model, tok, "cpu").generate([p], 20)[0] for p in prompts] == outs


def test_a_prompt_that_fills_the_context_gets_no_answer(tiny, monkeypatch):
    model, tok = tiny
    prompt = "word " * 40
    n = len(prompt_ids(tok, prompt))
    monkeypatch.setattr(model.config, "max_position_embeddings", n)
    spy = _Spy(model)
    outs, record = generate_all(HFGenerator(spy, tok, "cpu"), tok, [prompt, "Hi"], 4)
    assert outs[0] == "" and record["no_room"] == 1 and record["capped"] == 1
    assert [new for _, _, new in spy.calls] == [4]  # only the short prompt was generated


def test_budgets_match_the_generator(tiny):
    model, tok = tiny
    b = budgets(tok, ["a " * 600, "b"], 64, context_length(model.config))  # tiny-llama: 512 positions
    assert context_length(model.config) == 512
    assert b.per_prompt[0] == 0 and b.per_prompt[1] == 64 and b.capped == 1


def test_the_benchmark_entry_records_the_capped_answers(tiny, monkeypatch):
    """AlpacaEval on a model whose context leaves less than max_new_tokens: eval.json's entry says so."""
    from alignkit.plugins.benchmarks import alpaca_eval_run as alpaca_eval
    from tests.fixtures.eval_fixtures import REPO, bench_config

    model, tok = tiny
    monkeypatch.setattr(model.config, "max_position_embeddings", 64)
    cfg = bench_config("alpaca_eval", source=str(REPO / "assets" / "smoke-eval" / "alpaca_eval" / "alpaca_eval.json"),
                       num_prompts=3, max_new_tokens=2048)
    entry, rows = alpaca_eval.generate(HFGenerator(model, tok, "cpu"), tok, cfg, "b", "tiny/x/final")
    prompts, _ = alpaca_eval.prompts(tok, cfg, "b")
    lengths = [len(prompt_ids(tok, p)) for p in prompts]
    assert entry["max_new_tokens"] == 2048 and entry["context"] == 64
    assert entry["capped"] == 3 and entry["no_room"] == 0 and entry["min_budget"] == 64 - max(lengths)
    assert len(rows) == 3
