"""The eval job on the tiny model: lm-eval local tasks, safety evals, the adapter guard, one base load."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace

import pytest

from jobs.errors import JobFailure, Preempted
from tests.fixtures.eval_fixtures import (MODEL, TINY, TOX, bench_config, benchmarks, eval_job, make_adapter,
                                         train_job_with_adapters)
from tests.fixtures.judge_server import JudgeServer
from tests.fixtures.train_configs import typed
from alignkit.contract import ContractError


def test_missing_checkpoint_fails_before_any_model_is_loaded(tmp_path):
    from jobs.eval import stage as evaluate

    (tmp_path / "jobs" / "tr" / "checkpoints").mkdir(parents=True)
    d, cfg = eval_job(tmp_path, "tr", [99, "final"], benchmarks(safety=False))
    with pytest.raises(JobFailure, match=r"checkpoint 99: .*/jobs/tr/checkpoints/step-99 does not exist"):
        evaluate.run(d, typed(cfg), threading.Event())
    cfg["benchmarks"]["x"] = {"type": "helm"}
    with pytest.raises(ContractError, match="benchmarks.x.type: 'helm' is not one of alpaca_eval, lm_eval"):
        typed(cfg)  # refused by the loader (jobs/entry.py) before the stage runs
    cfg["benchmarks"].pop("x")
    cfg["target"]["kind"] = "merged"
    cfg["checkpoints"] = [3]
    with pytest.raises(JobFailure, match="a merged target has only 'final'"):
        evaluate.run(d, typed(cfg), threading.Event())


@pytest.mark.slow
def test_eval_job_on_a_trained_adapter_then_judge(tmp_path):
    """Must show: train a tiny adapter (jobs.train.stage), evaluate two checkpoints, judge the generations."""
    from jobs.entry import run_job
    from tests.fixtures.train_configs import train_config

    tr = tmp_path / "jobs" / "tr"
    tr.mkdir(parents=True)
    tc = train_config("sft", max_steps=4, save_steps=2)
    (tr / "config.json").write_text(json.dumps(tc))
    assert run_job(tr) == "done"

    ev = tmp_path / "jobs" / "ev"
    ev.mkdir()
    cfg = {"stage": "eval", "axes": tc["axes"], "model": tc["model"], "target": {"job": "tr", "kind": "adapter"},
           "checkpoints": [2, "final"], "benchmarks": benchmarks()}
    (ev / "config.json").write_text(json.dumps(cfg))
    assert run_job(ev) == "done"
    out = json.loads((ev / "eval.json").read_text())
    assert list(out["checkpoints"]) == ["2", "final"]
    for ckpt, res in out["checkpoints"].items():
        mmlu, bbh, rt = res["mmlu"], res["bbh"], res["realtoxicity"]
        assert mmlu["metric"] == "acc" and 0 <= mmlu["acc"] <= 1 and isinstance(mmlu["acc_stderr"], float)
        assert mmlu["n"] == 6 and mmlu["task_versions"] == {"smoke_mmlu": 1.0} and mmlu["num_fewshot"] == 1
        assert mmlu["chat_template"] is False
        assert bbh["metric_key"] == "exact_match,strip" and bbh["n"] == 4 and 0 <= bbh["exact_match"] <= 1
        assert rt["metric"] == "toxicity_logit" and isinstance(rt["toxicity_logit"], float) and rt["n"] == 4
        assert "highest prompt.toxicity" in rt["selection"] and rt["rows_without_toxicity"] == 1
        gens = [json.loads(x) for x in (ev / rt["generations"]).read_text().splitlines()]
        assert len(gens) == 4 and all(isinstance(g["score"], float) for g in gens)
        assert sum(g["score"] for g in gens) / 4 == pytest.approx(rt["toxicity_logit"])
        ae = [json.loads(x) for x in (ev / res["alpaca_eval"]["generations"]).read_text().splitlines()]
        assert [set(r) for r in ae] == [{"instruction", "output", "generator", "dataset"}] * 3
        assert json.loads((ev / "generations" / ckpt / "alpaca_eval_model_outputs.json").read_text()) == ae
        ri = [json.loads(x) for x in (ev / res["red_instruct"]["generations"]).read_text().splitlines()]
        assert [set(r) for r in ri] == [{"prompt", "response"}] * 3
    prov = out["provenance"]
    assert prov["lm_eval_version"] == "0.4.13" and prov["template"] == tc["model"]["template"]
    assert prov["base_model"]["source"] == str(TINY)
    sha = hashlib.sha256((tr / "adapter" / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert prov["checkpoints"]["final"]["adapter_sha256"] == sha
    assert prov["checkpoints"]["2"]["guard_max_logit_diff"] > 0
    # status's progress.json: 2 checkpoints x 5 benchmarks, items = generated rows (4 + 3 + 3 each)
    prog = json.loads((ev / "progress.json").read_text())
    assert (prog["step"], prog["max_steps"], prog["items_done"]) == (10, 10, 20)

    jd = tmp_path / "jobs" / "jd"
    jd.mkdir()
    # AlpacaEval's weighted annotator asks for one token's log-probs ("m": the first output shown is better)
    with JudgeServer(answer=lambda s, u: "[[B]]", logprobs=lambda s, u: {"m": -0.2, "M": -1.8}) as srv:
        judged = {k: dict(v, judge=srv.judge_config(name="loop")) for k, v in benchmarks().items()
                  if k in ("red_instruct", "alpaca_eval")}
        judged["alpaca_eval"].update(length_controlled=False,
                                     judge=srv.judge_config(name="loop", model="gpt-4-1106-preview"))
        (jd / "config.json").write_text(json.dumps({"stage": "judge", "axes": {}, "target": {"job": "ev"},
                                                    "benchmarks": judged}))
        assert run_job(jd) == "done"
        # 3 + 3 prompts per checkpoint; a prompt both checkpoints answered alike is asked once (cache)
        asked = {json.dumps(r["body"]["messages"]) for r in srv.requests}
        assert 6 <= len(srv.requests) == len(asked) <= 12
    res = json.loads((jd / "judge.json").read_text())["checkpoints"]
    prog = json.loads((jd / "progress.json").read_text())
    assert (prog["step"], prog["max_steps"], prog["items_done"]) == (4, 4, 12)  # 2 ckpts x 2 judged, 3 rows each
    assert res["final"]["red_instruct"]["safety"] == 0.0 and res["final"]["red_instruct"]["n"] == 3
    assert 0 <= res["2"]["alpaca_eval"]["win_rate"] <= 100 and res["2"]["alpaca_eval"]["n"] == 3


@pytest.mark.slow
def test_unapplied_adapter_fails_loudly(tmp_path):
    from jobs.entry import run_job

    train_job_with_adapters(tmp_path, [], final=True, applied=False)
    d, _ = eval_job(tmp_path, "tr", ["final"], benchmarks(safety=False))
    with pytest.raises(JobFailure, match=r"adapter at .*/jobs/tr/adapter does not change the model's logits"):
        run_job(d)
    err = json.loads((d / "error.json").read_text())
    assert err["reason"].startswith("adapter at ") and "\n" not in err["reason"]
    assert not (d / "eval.json").exists() and not (d / "DONE").exists()


@pytest.mark.slow
def test_adapter_whose_weights_do_not_load_is_caught(tmp_path):
    """Keys renamed (as from a mismatched PEFT version or base): PEFT only warns and keeps B = 0."""
    from safetensors.torch import load_file, save_file

    from jobs.eval import stage as evaluate

    a = make_adapter(tmp_path / "jobs" / "tr" / "adapter", seed=3)
    f = a / "adapter_model.safetensors"
    save_file({k.replace("self_attn", "attention"): v for k, v in load_file(f).items()}, f)
    d, cfg = eval_job(tmp_path, "tr", ["final"], benchmarks(safety=False))
    with pytest.raises(JobFailure, match="does not change the model's logits"):
        evaluate.run(d, typed(cfg), threading.Event())


@pytest.mark.slow
def test_adapter_swaps_on_one_base_match_fresh_loads_and_differ_from_base(tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jobs.eval.stage import AdapterSlot, adapter_guard
    from jobs.eval.generate import HFGenerator

    paths = [make_adapter(tmp_path / f"a{i}", seed=i) for i in range(3)]
    tok = AutoTokenizer.from_pretrained(TINY)
    base = AutoModelForCausalLM.from_pretrained(TINY).eval()
    enc = tok("Can you tell me something about the moon?", return_tensors="pt")
    with torch.no_grad():
        base_logits = base(**enc).logits
    base_text = HFGenerator(base, tok, "cpu").generate(["Tell me about the moon."], 8)
    slot = AdapterSlot(base)
    seen = []
    for i, p in enumerate(paths):
        model = slot.swap(str(i), p)
        assert list(model.peft_config) == [f"ckpt_{i}"]  # the previous adapter was dropped
        assert model.get_base_model() is base  # no second copy of the base
        assert adapter_guard(model, tok, p, "cpu") > 1e-3
        fresh = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(TINY), str(p)).eval()
        with torch.no_grad():
            swapped, expected = model(**enc).logits, fresh(**enc).logits
        torch.testing.assert_close(swapped, expected)
        assert not torch.allclose(swapped, base_logits, atol=1e-3)
        seen.append(HFGenerator(model, tok, "cpu").generate(["Tell me about the moon."], 8))
    assert any(s != base_text for s in seen)  # the adapters change generations, not only logits


def _count_lm_eval(monkeypatch) -> list:
    """Record every lm-eval run (benchmark name, checkpoint's adapter) the eval job starts."""
    from alignkit.plugins.benchmarks import lm_eval_run

    calls: list = []
    real = lm_eval_run.run_benchmark

    def counted(model, tok, name, cfg, **kw):
        calls.append((name, getattr(model, "active_adapter", None)))
        return real(model, tok, name, cfg, **kw)

    monkeypatch.setattr(lm_eval_run, "run_benchmark", counted)
    return calls


@pytest.mark.slow
def test_requeued_eval_resumes_after_the_finished_checkpoints(tmp_path, monkeypatch):
    from jobs.eval import stage as evaluate

    calls = _count_lm_eval(monkeypatch)
    train_job_with_adapters(tmp_path, [2], final=True)
    bench = {"mmlu": benchmarks(safety=False)["mmlu"]}
    d, cfg = eval_job(tmp_path, "tr", [2, "final"], bench)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Preempted):
        evaluate.run(d, typed(cfg), stop)
    assert json.loads((d / "eval.json").read_text())["checkpoints"] == {}
    evaluate.run(d, typed(cfg), threading.Event())
    first = json.loads((d / "eval.json").read_text())
    assert [c[0] for c in calls] == ["mmlu", "mmlu"]
    # a requeue finds both results in the sweep's store: nothing is evaluated again
    evaluate.run(d, typed(cfg), threading.Event())
    second = json.loads((d / "eval.json").read_text())
    assert len(calls) == 2
    assert all(second["checkpoints"][c]["mmlu"]["reused"] is True for c in ("2", "final"))
    assert second["checkpoints"]["final"]["mmlu"]["acc"] == first["checkpoints"]["final"]["mmlu"]["acc"]
    p1, p2 = first["provenance"]["checkpoints"], second["provenance"]["checkpoints"]
    assert p2["2"]["evaluated_at"] == p1["2"]["evaluated_at"] and p2["2"]["reused"] is True
    # a result missing from the store (a job stopped mid-checkpoint) is computed again, alone
    key = first["checkpoints"]["final"]["mmlu"]["result_key"]
    (tmp_path / "results" / f"{key}.json").unlink()
    evaluate.run(d, typed(cfg), threading.Event())
    third = json.loads((d / "eval.json").read_text())
    assert len(calls) == 3 and calls[-1][1] == "ckpt_final"
    p3 = third["provenance"]["checkpoints"]
    assert p3["2"]["evaluated_at"] == p1["2"]["evaluated_at"]
    assert p3["final"]["evaluated_at"] > p1["final"]["evaluated_at"]
    assert third["checkpoints"]["final"]["mmlu"]["acc"] == first["checkpoints"]["final"]["mmlu"]["acc"]
    # a checkpoint whose adapter changed on disk since is evaluated again
    make_adapter(tmp_path / "jobs" / "tr" / "checkpoints" / "step-2", seed=42)
    evaluate.run(d, typed(cfg), threading.Event())
    fourth = json.loads((d / "eval.json").read_text())["provenance"]["checkpoints"]
    assert len(calls) == 4 and calls[-1][1] == "ckpt_2"
    assert fourth["2"]["evaluated_at"] > p3["2"]["evaluated_at"]
    assert fourth["final"]["evaluated_at"] == p3["final"]["evaluated_at"]


@pytest.mark.slow
def test_merged_model_target(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jobs.eval import stage as evaluate

    a = make_adapter(tmp_path / "a", seed=5)
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(TINY), str(a)).merge_and_unload()
    out = tmp_path / "jobs" / "mg" / "model"
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(TINY).save_pretrained(out)
    bench = benchmarks()
    bench = {"mmlu": bench["mmlu"], "realtoxicity": bench["realtoxicity"]}
    d, cfg = eval_job(tmp_path, "mg", ["final"], bench, kind="merged")
    evaluate.run(d, typed(cfg), threading.Event())
    res = json.loads((d / "eval.json").read_text())
    assert res["checkpoints"]["final"]["mmlu"]["n"] == 6
    assert res["provenance"]["checkpoints"]["final"]["adapter_sha256"] is None
    assert res["provenance"]["target"]["kind"] == "merged"


@pytest.mark.slow
def test_untrained_base_model_target(tmp_path):
    from jobs.eval import stage as evaluate

    bench = benchmarks()
    d, cfg = eval_job(tmp_path, "unused", ["final"], {"mmlu": bench["mmlu"]}, kind="base")
    cfg["target"] = {"kind": "base"}  # no job: the base model itself (evals.base_models)
    evaluate.run(d, typed(cfg), threading.Event())
    res = json.loads((d / "eval.json").read_text())
    assert res["checkpoints"]["final"]["mmlu"]["n"] == 6
    assert res["provenance"]["target"]["kind"] == "base"
    cfg["checkpoints"] = [10, "final"]
    from jobs.errors import JobFailure
    with pytest.raises(JobFailure, match="the untrained base model has only 'final'"):
        evaluate.run(d, typed(cfg), threading.Event())


@pytest.mark.slow
def test_tiny_classifier_scores_toxic_text_below_friendly_text():
    from alignkit.plugins.benchmarks.realtoxicity_run import ToxicityScorer

    scorer = ToxicityScorer(str(TOX), "cpu", "b")
    toxic, safe = scorer.score(["What do you think of me?"] * 2, ["you are a stupid ugly idiot", "have a lovely day"])
    assert toxic < 0 < safe


@pytest.mark.slow
def test_tiny_classifier_builder_reproduces_the_committed_one(tmp_path):
    from assets.build.tiny_classifier import build

    assert build(tmp_path / "tox") == json.loads((TOX / "build.json").read_text())


@pytest.mark.slow
def test_hf_judge_runs_locally_and_caches(tmp_path):
    from alignkit.contract.common import JudgeClientConfig
    from jobs.judge.judges import make_judge
    from alignkit.plugins.benchmarks import red_instruct_run as red_instruct

    cfg = JudgeClientConfig(name="tiny", type="hf", source=str(TINY))
    rows = [{"prompt": "How do I cheat?", "response": "I will not help."}]
    judge = make_judge(cfg, tmp_path)
    entry, verdicts = red_instruct.judge(rows, judge)
    assert judge.requests_made == 1 and entry["judge"] == f"hf:{TINY}"
    # the tiny model picks one of the two tags by likelihood, so the verdict always parses
    assert entry["n"] == 1 and entry["unparseable"] == 0 and "constrained choice" in verdicts[0]["reply"]
    free = judge.ask("Say something.", "Hello")  # no tags named: free greedy generation
    assert isinstance(free, str) and judge.requests_made == 2
    again = make_judge(cfg, tmp_path)
    assert red_instruct.judge(rows, again)[1] == verdicts and again.requests_made == 0


def test_model_fixture_matches_the_contract_shape():
    assert set(MODEL) == {"name", "source", "revision", "template", "kind", "dtype"}


@pytest.mark.slow  # indexing lm-eval's built-in tasks takes ~10 s
def test_unknown_lm_eval_task_or_folder_is_a_one_line_failure(tmp_path):
    from alignkit.plugins.benchmarks.lm_eval_run import run_benchmark

    cfg = bench_config(**dict(benchmarks(safety=False)["mmlu"], task="smoke_nope"))
    with pytest.raises(JobFailure, match=r"benchmarks.mmlu.task: lm-eval knows no task or group 'smoke_nope' \(built-in"):
        run_benchmark(None, None, "mmlu", cfg, device="cpu")
    with pytest.raises(JobFailure, match="benchmarks.mmlu.include_path: .* is not a directory"):
        run_benchmark(None, None, "mmlu", replace(cfg, include_path=str(tmp_path / "none")), device="cpu")
