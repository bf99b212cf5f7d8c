"""The result store (docs/evaluation.md "Result store") on a tiny study: adding a benchmark to a
finished study computes only the new one; an external adapter is evaluated as its trained run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alignkit.plan.compiler import load_plan
from alignkit.contract.fsio import atomic_write_json
from tests.fixtures.written import written

REPO = Path(__file__).resolve().parents[3]
SMOKE = REPO / "sweeps" / "smoke.yaml"


def _spec(tmp: Path, name: str, extra_benchmark: bool, targets: dict | None = None) -> Path:
    """sweeps/smoke.yaml cut to one SFT run of 4 steps, evaluated at step 2 and final, no merges."""
    d = yaml.safe_load(SMOKE.read_text())
    d["name"], d["output_dir"] = name, str(tmp / "sweep")
    d["grid"] = {"model": ["tiny-llama"], "dataset": ["beavertails"], "preference": ["helpful"],
                 "method": ["sft"], "peft": ["lora"], "seed": [0]}
    d["training"].update(max_steps=4, save_steps=2)
    d["evals"].update(checkpoints=[2, "final"], base_models=False)
    d["merges"] = []
    if targets:
        d["targets"] = targets
    b = d["evals"]["benchmarks"]
    b["realtoxicity"]["num_prompts"] = 3
    b["red_instruct"]["num_prompts"] = 2
    keep = ["mmlu", "realtoxicity", "red_instruct"] + (["bbh"] if extra_benchmark else [])
    d["evals"]["benchmarks"] = {k: b[k] for k in keep}
    for section in ("models", "datasets", "evals.judges", "evals.benchmarks"):  # paths relative to sweeps/
        entries = d
        for part in section.split("."):
            entries = entries[part]
        for entry in entries.values():
            for key in ("source", "include_path", "classifier"):
                if isinstance(entry.get(key), str) and entry[key].startswith("../"):
                    entry[key] = str((SMOKE.parent / entry[key]).resolve())
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _run(plan, stages=("train", "eval", "judge")) -> dict[str, Path]:
    """Every job of the plan in order (dependencies come first in a plan), as the executors do."""
    from jobs.entry import run_job

    dirs = {}
    for job in plan.jobs:
        if job.stage not in stages:
            continue
        d = plan.output_dir / "jobs" / job.id
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "config.json").exists():
            atomic_write_json(d / "config.json", written(job))
        run_job(d)
        dirs[job.stage] = d
    return dirs


class Calls:
    """Counts the work the jobs start: lm-eval runs, generated prompts, judged rows."""

    def __init__(self, monkeypatch) -> None:
        from alignkit.plugins.benchmarks.red_instruct import RedInstruct
        from alignkit.plugins.benchmarks import lm_eval_run
        from jobs.eval.generate import HFGenerator

        self.lm_eval: list[str] = []
        self.prompts = 0
        self.judged = 0
        real_lm, real_gen, real_score = lm_eval_run.run_benchmark, HFGenerator.generate, RedInstruct.score

        def lm(model, tok, name, cfg, **kw):
            self.lm_eval.append(name)
            return real_lm(model, tok, name, cfg, **kw)

        def gen(gen_self, prompts, *a, **kw):
            self.prompts += len(prompts)
            return real_gen(gen_self, prompts, *a, **kw)

        def score(bench_self, ctx, name, cfg, rows, judge):
            self.judged += len(rows)
            return real_score(bench_self, ctx, name, cfg, rows, judge)

        monkeypatch.setattr(lm_eval_run, "run_benchmark", lm)
        monkeypatch.setattr(HFGenerator, "generate", gen)
        monkeypatch.setattr(RedInstruct, "score", score)


def _numbers(entry: dict) -> dict:
    """An entry without what differs between the job that computed it and one that reuses it."""
    return {k: v for k, v in entry.items() if k not in ("reused", "reused_from", "seconds", "generations",
                                                        "verdicts")}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("store")
    plan = load_plan(_spec(tmp, "store", extra_benchmark=False), profile="dev")
    assert [j.stage for j in plan.jobs] == ["train", "eval", "judge"]
    return tmp, plan, _run(plan)


@pytest.mark.slow
def test_adding_a_benchmark_reruns_no_old_benchmark(study, monkeypatch):
    tmp, plan1, first = study
    calls = Calls(monkeypatch)
    plan2 = load_plan(_spec(tmp, "store", extra_benchmark=True), profile="dev")
    ids1, ids2 = {j.stage: j.id for j in plan1.jobs}, {j.stage: j.id for j in plan2.jobs}
    assert ids2["train"] == ids1["train"] and ids2["eval"] != ids1["eval"]  # a new eval job, same run
    second = _run(plan2)
    # only the new benchmark is computed: bbh at both checkpoints; no generation, no judging
    assert sorted(calls.lm_eval) == ["bbh", "bbh"]
    assert calls.prompts == 0 and calls.judged == 0
    ev1 = json.loads((first["eval"] / "eval.json").read_text())["checkpoints"]
    ev2 = json.loads((second["eval"] / "eval.json").read_text())["checkpoints"]
    for c in ("2", "final"):
        assert ev2[c]["bbh"]["n"] == 14 and "reused" not in ev2[c]["bbh"]  # the smoke BBH task, all of it
        for name, entry in ev1[c].items():
            assert ev2[c][name]["reused"] is True and ev2[c][name]["reused_from"] == first["eval"].name
            assert _numbers(ev2[c][name]) == _numbers(entry)  # identical numbers
            if "generations" in entry:  # the generations are in the new job too, row for row
                assert (second["eval"] / ev2[c][name]["generations"]).read_text() == \
                    (first["eval"] / entry["generations"]).read_text()
    assert ev1["final"]["mmlu"]["result_key"] == ev2["final"]["mmlu"]["result_key"]
    j1 = json.loads((first["judge"] / "judge.json").read_text())["checkpoints"]
    j2 = json.loads((second["judge"] / "judge.json").read_text())["checkpoints"]
    assert list(j2) == ["final"] and j2["final"]["red_instruct"]["reused"] is True
    assert _numbers(j2["final"]["red_instruct"]) == _numbers(j1["final"]["red_instruct"])
    assert (second["judge"] / "verdicts" / "final" / "red_instruct.jsonl").read_text() == \
        (first["judge"] / "verdicts" / "final" / "red_instruct.jsonl").read_text()
    # the store holds one record per (target, checkpoint, benchmark) and per judged one
    records = [json.loads(p.read_text()) for p in (plan1.output_dir / "results").glob("*.json")]
    assert sorted((r["stage"], r["checkpoint"], r["benchmark"]) for r in records) == sorted(
        [("eval", c, b) for c in ("2", "final") for b in ("mmlu", "realtoxicity", "bbh")]
        + [("eval", "final", "red_instruct"), ("judge", "final", "red_instruct")])


@pytest.mark.slow
def test_external_adapter_evaluates_as_the_trained_run(study, monkeypatch):
    """The study's trained final adapter, named in `targets:` (compiled to an external target: its
    path on the base in config["model"]): the same numbers, generations and verdicts as the study's
    own eval and judge of that run."""
    tmp, plan, first = study
    calls = Calls(monkeypatch)
    adapter = first["train"] / "adapter"
    plan3 = load_plan(_spec(tmp, "store", extra_benchmark=False,
                            targets={"mine": {"source": str(adapter), "base": "tiny-llama"}}), profile="dev")
    ev = next(j for j in plan3.jobs if j.name == "target:mine/eval")
    assert written(ev)["target"] == {"kind": "external", "name": "mine", "source": str(adapter), "revision": None}
    assert ev.depends_on == ()
    third = _run(plan3)  # the study's own jobs are done; the target's eval and judge run
    assert third["eval"].name == ev.id
    # another target: computed, not taken from the store (final only: a target has one checkpoint)
    assert sorted(calls.lm_eval) == ["mmlu"] and calls.prompts == 3 + 2 and calls.judged == 2
    got = json.loads((third["eval"] / "eval.json").read_text())
    want = json.loads((first["eval"] / "eval.json").read_text())
    assert list(got["checkpoints"]) == ["final"]
    for name, entry in want["checkpoints"]["final"].items():
        mine = got["checkpoints"]["final"][name]
        assert "reused" not in mine and mine["result_key"] != entry["result_key"]
        assert _numbers(mine) == {**_numbers(entry), "result_key": mine["result_key"]}
        if "generations" in entry:
            assert (third["eval"] / mine["generations"]).read_text() == \
                (first["eval"] / entry["generations"]).read_text()
    prov = got["provenance"]
    assert prov["target"] == {"kind": "external", "name": "mine", "source": str(adapter)}
    assert prov["checkpoints"]["final"]["adapter_sha256"] == want["provenance"]["checkpoints"]["final"]["adapter_sha256"]
    assert prov["checkpoints"]["final"]["guard_max_logit_diff"] > 0
    j1 = json.loads((first["judge"] / "judge.json").read_text())["checkpoints"]["final"]["red_instruct"]
    j3 = json.loads((third["judge"] / "judge.json").read_text())["checkpoints"]["final"]["red_instruct"]
    assert {**_numbers(j3), "result_key": None} == {**_numbers(j1), "result_key": None}
