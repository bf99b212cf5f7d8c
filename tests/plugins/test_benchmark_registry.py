"""The benchmark registry (one module per type) and the typed eval/judge contract, without a model."""

from __future__ import annotations

import importlib
import json
import sys
import threading
from pathlib import Path

import pytest

from alignkit.plugins import benchmarks
from alignkit.plan.compiler import load_plan
from alignkit.contract.eval import ContractError, EvalConfig, eval_key, load_eval
from alignkit.contract.judge import JudgeConfig, load_judge
from alignkit.contract.errors import SpecError
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.train_configs import typed
from tests.fixtures.written import written

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, flags", [
    # AlpacaEval 0.6.6 models_configs: 2048; red-instruct generate_responses.py: 500; RTP: 20
    ("alpaca_eval", (True, True, 2048)), ("lm_eval", (False, False, None)),
    ("realtoxicity", (True, False, 20)), ("red_instruct", (True, True, 500)),
])
def test_the_reference_types_keep_their_flags_and_reference_lengths(name, flags):
    """The reference lengths of the shipped types (outside numbers); every registered type, these and
    any new one, is checked against the Benchmark interface in test_conformance_benchmarks.py."""
    b = benchmarks.get(name)
    assert (b.generates, b.judged, b.reference_max_new_tokens) == flags


def test_a_new_type_is_one_module_of_the_package(tmp_path, monkeypatch):
    """The registry finds a type by importing its package's modules: nothing else lists it."""
    pkg = tmp_path / "more_benchmarks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from alignkit.plugins.benchmarks import Registry\nREG = Registry('benchmark type', __name__)\n")
    (pkg / "exact.py").write_text("from more_benchmarks import REG\n\n@REG.register('exact')\nclass Exact:\n    pass\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # (syspath_prepend needs pkg_resources)
    importlib.invalidate_caches()
    import more_benchmarks

    assert more_benchmarks.REG.names() == ["exact"] and more_benchmarks.REG.get("exact").__name__ == "Exact"
    for mod in ("more_benchmarks", "more_benchmarks.exact"):
        monkeypatch.delitem(sys.modules, mod)


def test_every_compiled_eval_and_judge_config_loads_strictly():
    for spec in ("smoke.yaml", "full.yaml"):
        plan = load_plan(ROOT / "sweeps" / spec, profile="dev")
        for job in plan.jobs:
            if job.stage == "eval":
                cfg = load_eval(written(job))
                assert isinstance(cfg, EvalConfig) and cfg.model.name == written(job)["model"]["name"]
            elif job.stage == "judge":
                assert isinstance(load_judge(written(job)), JudgeConfig)


def test_resolved_configs_keep_the_shape_the_compiler_wrote_before_the_registry():
    plan = load_plan(ROOT / "sweeps" / "smoke.yaml", profile="dev")
    ev = next(j for j in plan.jobs if j.stage == "eval" and written(j)["target"].get("kind") == "adapter")
    b = written(ev)["benchmarks"]
    # every type keeps every key of the one BenchmarkSpec of before (so ids stay); only lm_eval
    # has chat_template, resolved from the model's lm_eval_chat_template
    legacy = {"type", "task", "include_path", "filter", "num_fewshot", "metric", "limit", "source", "revision",
              "num_prompts", "max_new_tokens", "classifier", "classifier_revision", "reference", "annotator",
              "length_controlled", "checkpoints"}
    assert set(b["mmlu"]) == legacy | {"chat_template"} and b["mmlu"]["chat_template"] is False
    assert set(b["realtoxicity"]) == legacy
    assert b["realtoxicity"]["classifier"] == str(ROOT / "assets" / "tiny-toxicity")
    assert b["mmlu"]["include_path"] == str(ROOT / "assets" / "smoke-eval" / "tasks")
    judge = next(j for j in plan.jobs if j.stage == "judge")
    assert written(judge)["benchmarks"]["red_instruct"]["judge"]["name"] == "tiny"
    assert written(judge)["benchmarks"]["red_instruct"]["judge"]["source"] == str(ROOT / "assets" / "tiny-llama")


def test_a_field_its_type_does_not_take_is_refused(tmp_path):
    d = base()
    d["evals"]["benchmarks"]["mmlu"]["reference"] = "alpaca_eval.json"
    with pytest.raises(SpecError, match="evals.benchmarks.mmlu.reference: only an alpaca_eval benchmark takes"):
        load_plan(write(tmp_path, d))


def _eval_config(**over) -> dict:
    cfg = {"stage": "eval", "axes": {}, "model": {"name": "m", "source": "/m", "dtype": "float32"},
           "target": {"job": "t", "kind": "adapter"}, "checkpoints": ["final"],
           "benchmarks": {"mmlu": {"type": "lm_eval", "task": "x", "metric": "acc"}}}
    cfg.update(over)
    return cfg


@pytest.mark.parametrize("over, message", [
    ({"benchmarks": {"mmlu": {"type": "lm_eval", "tsk": "x"}}}, r"f.json:? ?.*benchmarks\.mmlu\.tsk: unknown key 'tsk'"),
    ({"target": {"kind": "remote"}}, r"target\.kind: unknown value 'remote'"),
    # a step, "final" or a fraction of training (a float: kept as such with num_train_epochs); not a list
    ({"checkpoints": [[1]]}, r"checkpoints\[0\]: expected a string or an integer or a number, got a list"),
    ({"model": {"name": "m"}}, r"model\.source: required key 'source' is missing"),
    ({"benchmarks": {"x": {"type": "helm"}}}, r"f.json: benchmarks.x.type: 'helm' is not one of alpaca_eval, lm_eval"),
])
def test_bad_config_is_one_line_naming_the_file_and_key(over, message):
    with pytest.raises(ContractError, match=message) as err:
        load_eval(_eval_config(**over), "f.json")
    assert "\n" not in str(err.value) and "f.json" in str(err.value)


def test_model_defaults_are_the_specs():
    cfg = load_eval(_eval_config())
    assert (cfg.model.revision, cfg.model.template, cfg.model.lm_eval_chat_template) == ("main", "chat_template", False)


def test_result_keys_leave_labels_and_checkpoint_lists_out():
    cfg = load_eval(_eval_config())
    relabelled = load_eval(_eval_config(axes={"seed": 3}, model={"name": "other", "source": "/m", "dtype": "float32"}))
    b = cfg.benchmarks["mmlu"]
    assert eval_key(cfg, "final", b)[0] == eval_key(relabelled, "final", b)[0]
    at_two = load_eval(_eval_config(benchmarks={"mmlu": {"type": "lm_eval", "task": "x", "metric": "acc",
                                                         "checkpoints": [2, "final"]}}))
    assert eval_key(at_two, "final", at_two.benchmarks["mmlu"])[0] == eval_key(cfg, "final", b)[0]
    assert eval_key(cfg, "2", b)[0] != eval_key(cfg, "final", b)[0]
    fewshot = load_eval(_eval_config(benchmarks={"mmlu": {"type": "lm_eval", "task": "x", "metric": "acc",
                                                          "num_fewshot": 5}}))
    assert eval_key(fewshot, "final", fewshot.benchmarks["mmlu"])[0] != eval_key(cfg, "final", b)[0]
    other_target = load_eval(_eval_config(target={"job": "u", "kind": "adapter"}))
    assert eval_key(other_target, "final", b)[0] != eval_key(cfg, "final", b)[0]


def test_external_target_checks_fail_before_any_model_is_loaded(tmp_path):
    from jobs.eval import stage as evaluate
    from jobs.errors import JobFailure

    d = tmp_path / "jobs" / "ev"
    d.mkdir(parents=True)
    cfg = _eval_config(target={"kind": "external", "name": "x", "source": str(tmp_path / "nope")})
    with pytest.raises(JobFailure, match=r"target.source: .*/nope does not exist"):
        evaluate.run(d, typed(cfg), threading.Event())
    with pytest.raises(JobFailure, match="an external adapter has only 'final'"):
        evaluate.run(d, typed(dict(cfg, checkpoints=[2, "final"])), threading.Event())
    with pytest.raises(JobFailure, match="an external target names its adapter"):
        evaluate.run(d, typed(dict(cfg, target={"kind": "external"})), threading.Event())
    (tmp_path / "empty").mkdir()
    with pytest.raises(JobFailure, match="has no adapter_model.safetensors"):
        evaluate.run(d, typed(dict(cfg, target={"kind": "external", "source": str(tmp_path / "empty")})), threading.Event())
    assert not (d / "eval.json").exists()


def test_judge_config_is_loaded_strictly(tmp_path):
    from jobs.judge import stage as judge
    from jobs.errors import JobFailure

    d = tmp_path / "jobs" / "jd"
    d.mkdir(parents=True)
    from alignkit.contract import ContractError

    with pytest.raises(ContractError, match=r"config: target.job: required key 'job' is missing"):
        typed({"stage": "judge", "target": {}, "benchmarks": {}})  # the loader jobs/entry.py runs
    with pytest.raises(JobFailure, match=r"benchmarks.mmlu.type: 'lm_eval' is not judged \(expected alpaca_eval or red_instruct\)"):
        (tmp_path / "jobs" / "ev").mkdir()
        (tmp_path / "jobs" / "ev" / "DONE").write_text("")
        (tmp_path / "jobs" / "ev" / "eval.json").write_text(json.dumps({"checkpoints": {}}))
        judge.run(d, typed({"stage": "judge", "target": {"job": "ev"},
                            "benchmarks": {"mmlu": {"type": "lm_eval", "task": "x", "metric": "acc"}}}), threading.Event())


def test_result_store_round_trip_and_refusals(tmp_path):
    from alignkit.contract.eval import ResultStore, StoredResult

    store = ResultStore(tmp_path)
    rows = tmp_path / "g.jsonl"
    rows.write_text('{"prompt": "p", "response": "r"}\n')
    rec = StoredResult(key="ab12", stage="eval", material={"m": 1}, job="j", benchmark="b", checkpoint="final",
                       entry={"n": 1}, checkpoint_provenance={"adapter_sha256": None})
    assert store.get("ab12") is None
    store.put(rec, rows)
    got = store.get("ab12")
    assert got.entry == {"n": 1} and got.rows_file == "ab12.jsonl" and got.created_at > 0
    assert store.rows_path(got).read_text() == rows.read_text()
    assert store.get("cd34") is None
    record = store.path("ab12")
    data = json.loads(record.read_text())
    record.write_text(json.dumps(dict(data, rows_file="../g.jsonl")))  # pointing outside the store: not followed
    assert store.get("ab12") is None
    record.write_text(json.dumps(dict(data, surprise=1)))  # not the contract: computed again
    assert store.get("ab12") is None
    record.write_text(json.dumps(data)[:20])  # cut short by a kill
    assert store.get("ab12") is None
    (tmp_path / "results" / "ab12.jsonl").unlink()
    record.write_text(json.dumps(data))
    assert store.get("ab12") is None  # a record without its rows


def test_a_field_the_type_does_not_read_is_refused(tmp_path):
    """A field a benchmark's type never reads is an error, not a silent no-op (smoke.yaml's lm_eval
    bbh carried a max_new_tokens that lm-eval never read, until the registry made it visible)."""
    from pathlib import Path

    from alignkit.plan.compiler import load_plan
    from alignkit.contract.errors import SpecError

    root = Path(__file__).resolve().parents[2]
    text = (root / "sweeps" / "smoke.yaml").read_text().replace("../assets", str(root / "assets"))
    text = text.replace("      metric: exact_match\n", "      metric: exact_match\n      max_new_tokens: 16\n", 1)
    spec = tmp_path / "smoke.yaml"
    spec.write_text(text)
    with pytest.raises(SpecError) as err:
        load_plan(spec)
    assert str(err.value).count("\n") == 0
    assert "evals.benchmarks.bbh.max_new_tokens: only an alpaca_eval or realtoxicity or red_instruct benchmark " \
           "takes 'max_new_tokens'" in str(err.value)
