"""What the plan evaluates and judges: per-benchmark checkpoints, the lm-eval chat-template default,
asset revisions, and the judges' calls, tokens and cost (docs/spec.md "Judge cost")."""

from __future__ import annotations

import ast
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignkit.plan.compiler import load_plan
from alignkit.contract.errors import SpecError
from alignkit.plan.judge_cost import CHARS_PER_TOKEN, SHAPES
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.written import written

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
FULL = ROOT / "sweeps" / "full.yaml"
EVERY = [100, 200, 300, 400, 500, 600, "final"]


def full_dict() -> dict:
    return yaml.safe_load(FULL.read_text())


# ---- judge calls: full.yaml before / after ------------------------------------------------------

def _total(judges: dict, key: str) -> float:
    return sum(j[key] for j in judges.values())


def test_full_yaml_judges_at_the_final_checkpoint_five_times_fewer_calls(tmp_path):
    after = load_plan(FULL, profile="dev").summary()["judges"]
    # AlpacaEval 2's annotator (gpt4_turbo) and Red-Instruct's GPT-4 judge (gpt4), each at the final
    # checkpoint of (360 runs + 100 merges + 4 untrained models)
    assert {n: {b: (e["calls"], e["checkpoints"]) for b, e in j["benchmarks"].items()} for n, j in after.items()} == {
        "gpt4_turbo": {"alpaca_eval": (464 * 805, ["final"])}, "gpt4": {"red_instruct": (464 * 200, ["final"])}}
    assert _total(after, "calls") == 464 * (805 + 200) == 466_320
    # the way full.yaml said to widen it: every checkpoint, as before (and without the untrained models)
    d = full_dict()
    for b in d["evals"]["benchmarks"].values():
        b.pop("checkpoints", None)
    d["evals"]["base_models"] = False
    before = load_plan(write(tmp_path, d), profile="dev").summary()["judges"]
    assert _total(before, "calls") == (360 * 7 + 100) * (805 + 200) == 2_633_100
    assert _total(before, "calls") >= 5 * _total(after, "calls")
    # priced at full.yaml's price_per_million_tokens: input and output tokens at their rates
    for name, price in (("gpt4", {"input": 30.0, "output": 60.0}), ("gpt4_turbo", {"input": 10.0, "output": 30.0})):
        j = after[name]
        assert j["price_per_million_tokens"] == price
        assert j["cost_usd"] == pytest.approx((j["input_tokens"] * price["input"]
                                               + j["output_tokens"] * price["output"]) / 1e6, abs=0.01)
        assert j["cost_usd"] < before[name]["cost_usd"] / 5


def test_token_rule_against_alpaca_evals_real_billed_tokens():
    """AlpacaEval's real annotations carry price_per_example = total_tokens x $0.01/1k (alpaca_eval
    decoders/openai.py, gpt-4-1106): the rule, fed the real outputs, must not underestimate them."""
    rows = json.loads((DATA / "alpaca_eval" / "vicuna-7b-v1.3.weighted_alpaca_eval_gpt4_turbo.annotations.json")
                      .read_text())
    billed = [r for r in rows if r.get("price_per_example") is not None]  # 3 identical pairs were not sent
    assert len(rows) == 805 and len(billed) == 802
    real = sum(float(r["price_per_example"]) / 1e-5 for r in billed)
    shape = SHAPES["alpaca_eval"]
    est = sum((shape.template_chars + len(r["instruction"]) + len(r["output_1"]) + len(r["output_2"]))
              / CHARS_PER_TOKEN + shape.reply_tokens for r in billed)
    assert real == pytest.approx(786_893, abs=1)
    assert 1.0 <= est / real <= 1.3  # measured: 1.20


def test_judged_shapes_are_measured_on_the_official_files():
    ref = json.loads((DATA / "alpaca_eval" / "gpt4_1106_preview.model_outputs.json").read_text())
    ae = SHAPES["alpaca_eval"]
    assert len(ref) == ae.items == 805
    assert statistics.mean(len(r["instruction"]) for r in ref) == pytest.approx(ae.instruction_chars, abs=0.05)
    assert statistics.mean(len(r["output"]) for r in ref) == pytest.approx(ae.reference_chars, abs=0.05)
    questions = json.loads((DATA / "red-instruct" / "dangerousqa.json").read_text())
    ri = SHAPES["red_instruct"]
    assert len(questions) == ri.items == 200
    assert statistics.mean(len(q) for q in questions) == pytest.approx(ri.instruction_chars, abs=0.01)
    # the official judge's system and user prompts, without their placeholders
    tree = ast.parse((DATA / "red-instruct" / "gpt4_as_judge.py").read_text())
    consts = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and t.id in ("system", "template")}
    fixed = len(consts["system"]) + len(consts["template"].replace("{question}", "").replace("{responseA}", ""))
    assert fixed == ri.template_chars


def test_plan_json_and_summary_show_the_eval_choices(tmp_path):
    """Must show: MMLU/BBH without chat template, base-model evals on, judge calls and tokens."""
    out = subprocess.run([sys.executable, "-m", "alignkit", "plan", str(FULL), "--profile", "dev", "--json"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    plan = json.loads(out)
    evals = [j for j in plan["jobs"] if j["stage"] == "eval"]
    lm = [b for j in evals for b in j["config"]["benchmarks"].values() if b["type"] == "lm_eval"]
    assert len(lm) == 2 * len(evals) and all(b["chat_template"] is False for b in lm)
    assert sum(j["config"]["target"]["kind"] == "base" for j in evals) == 4
    judges = plan["summary"]["judges"]
    assert judges["gpt4_turbo"]["calls"] + judges["gpt4"]["calls"] == 466_320
    assert all(j["input_tokens"] > 0 and j["output_tokens"] > 0 for j in judges.values())
    text = subprocess.run([sys.executable, "-m", "alignkit", "plan", str(FULL), "--profile", "dev"],
                          capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "judge gpt4_turbo (openai gpt-4-1106-preview): 373,520 calls" in text
    assert "judge gpt4 (openai gpt-4-0613): 92,800 calls" in text
    assert "alpaca_eval                   373,520 calls at checkpoints final" in text


# ---- chat template, per-benchmark checkpoints, ids ----------------------------------------------

def test_lm_eval_chat_template_is_off_unless_the_model_or_benchmark_turns_it_on(tmp_path):
    d = base()
    d["models"]["m2"]["lm_eval_chat_template"] = True
    plan = load_plan(write(tmp_path, d))
    ev = {written(j)["model"]["name"]: j for j in plan.jobs if j.stage == "eval"}
    assert written(ev["m1"])["benchmarks"]["mmlu"]["chat_template"] is False
    assert written(ev["m2"])["benchmarks"]["mmlu"]["chat_template"] is True
    d["evals"]["benchmarks"]["mmlu"]["chat_template"] = False  # the benchmark's word wins
    plan = load_plan(write(tmp_path, d))
    assert all(written(j)["benchmarks"]["mmlu"]["chat_template"] is False for j in plan.jobs if j.stage == "eval")


def test_a_benchmark_runs_and_is_judged_only_at_its_checkpoints(tmp_path):
    d = base()
    d["evals"]["base_models"] = True
    d["evals"]["checkpoints"] = [100, 200, "final"]
    d["evals"]["benchmarks"]["ae"]["checkpoints"] = [700]  # max_steps: the final adapter
    d["evals"]["benchmarks"]["early"] = {"type": "lm_eval", "task": "bbh", "metric": "exact_match",
                                         "checkpoints": [100]}
    plan = load_plan(write(tmp_path, d))
    by_id = plan.by_id()
    for j in plan.jobs:
        if j.stage == "eval" and written(j)["target"]["kind"] == "adapter":
            assert written(j)["checkpoints"] == [100, 200, "final"]
            assert {n: b["checkpoints"] for n, b in written(j)["benchmarks"].items()} == {
                "mmlu": [100, 200, "final"], "ae": ["final"], "early": [100]}
        elif j.stage == "eval":  # merged and untrained models have only "final": no "early" there
            assert written(j)["checkpoints"] == ["final"] and set(written(j)["benchmarks"]) == {"mmlu", "ae"}
        if j.stage == "judge":
            assert {n: b["checkpoints"] for n, b in written(j)["benchmarks"].items()} == {"ae": ["final"]}
            assert by_id[j.depends_on[0]].stage == "eval"
    # a benchmark at checkpoints no eval job loads gives no eval job at all for that target
    d["evals"]["benchmarks"] = {"early": d["evals"]["benchmarks"]["early"]}
    plan = load_plan(write(tmp_path, d))
    assert {written(j)["target"]["kind"] for j in plan.jobs if j.stage == "eval"} == {"adapter"}


def test_a_price_is_not_part_of_any_job_id(tmp_path):
    d = base()
    before = {j.name: j.id for j in load_plan(write(tmp_path, d)).jobs}
    d["evals"]["judges"]["j"]["price_per_million_tokens"] = {"input": 10, "output": 30}
    plan = load_plan(write(tmp_path, d, "b.yaml"))
    assert {j.name: j.id for j in plan.jobs} == before
    assert plan.summary()["judges"]["j"]["cost_usd"] > 0


def test_revisions_reach_the_job_configs(tmp_path):
    d = base()
    d["evals"]["benchmarks"]["ae"]["revision"] = "abc123"
    d["evals"]["benchmarks"]["rt"] = {"type": "realtoxicity", "source": "allenai/real-toxicity-prompts",
                                      "revision": "r1", "classifier_revision": "c1"}
    plan = load_plan(write(tmp_path, d))
    ev = next(j for j in plan.jobs if j.stage == "eval")
    assert written(ev)["benchmarks"]["ae"]["revision"] == "abc123"
    rt = written(ev)["benchmarks"]["rt"]
    assert (rt["source"], rt["revision"], rt["classifier"], rt["classifier_revision"]) == (
        "allenai/real-toxicity-prompts", "r1", "nicholasKluge/ToxicityModel", "c1")


@pytest.mark.parametrize("edit, where, message", [
    (lambda d: d["evals"]["benchmarks"]["ae"].update(checkpoints=[200]), "evals.benchmarks.ae.checkpoints[0]",
     "checkpoint 200 is not in evals.checkpoints"),
    (lambda d: d["evals"]["benchmarks"]["ae"].update(checkpoints=[]), "evals.benchmarks.ae.checkpoints",
     "empty"),
    (lambda d: d["evals"]["benchmarks"]["ae"].update(checkpoints=[150]), "evals.benchmarks.ae.checkpoints[0]",
     "not a multiple of training.save_steps"),
    (lambda d: d["evals"]["benchmarks"]["mmlu"].update(revision="abc"), "evals.benchmarks.mmlu.revision",
     "lm-eval tasks name their datasets in their task YAMLs"),
    (lambda d: d["evals"]["judges"]["j"].update(revision="abc"), "evals.judges.j.revision",
     "an openai judge has none"),
    (lambda d: d["evals"]["judges"]["j"].update(price_per_million_tokens={"input": -1, "output": 2}),
     "evals.judges.j.price_per_million_tokens.input", "must be zero or more"),
    (lambda d: d["evals"].update(chat_template={"vicuna": True}), "evals", "chat_template"),
])
def test_bad_eval_settings_are_named(tmp_path, edit, where, message):
    d = base()
    edit(d)
    with pytest.raises(SpecError) as err:
        load_plan(write(tmp_path, d))
    line = next(x for x in str(err.value).splitlines() if where in x)
    assert message in line and str(tmp_path / "spec.yaml") in line
