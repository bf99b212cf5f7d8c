"""A benchmark with its own `checkpoints` is generated and judged only there (tiny model, offline)."""

from __future__ import annotations

import json
import threading

from tests.unit.eval_fixtures import benchmarks, eval_job, train_job_with_adapters
from tests.unit.judge_server import JudgeServer
from tests.unit.train_configs import typed


def test_judged_benchmarks_at_the_final_checkpoint_only(tmp_path):
    from jobs.eval import stage as evaluate
    from jobs.judge import stage as judge_stage

    train_job_with_adapters(tmp_path, [2])
    # AlpacaEval's weighted annotator asks for one token's log-probs, of the annotator config's model
    with JudgeServer(answer=lambda s, u: "[[1]]" if "[[1]]" in s else "[[A]]",
                     logprobs=lambda s, u: {"m": -0.2, "M": -1.8}) as srv:
        bench = benchmarks(judge=srv.judge_config(name="loop"), lm_eval=False)
        bench["alpaca_eval"]["judge"] = srv.judge_config(name="loop", model="gpt-4-1106-preview")
        for name in ("alpaca_eval", "red_instruct"):
            bench[name]["checkpoints"] = ["final"]
        bench["alpaca_eval"]["length_controlled"] = False  # the smoke set has no LC GLM data
        bench["realtoxicity"]["checkpoints"] = [2, "final"]
        d, cfg = eval_job(tmp_path, "tr", [2, "final"], {k: {kk: vv for kk, vv in v.items() if kk != "judge"}
                                                          for k, v in bench.items()})
        evaluate.run(d, typed(cfg), threading.Event())
        (d / "DONE").write_text("")
        out = json.loads((d / "eval.json").read_text())["checkpoints"]
        assert set(out["2"]) == {"realtoxicity"}
        assert set(out["final"]) == {"realtoxicity", "alpaca_eval", "red_instruct"}
        assert sorted(p.name for p in (d / "generations" / "2").iterdir()) == ["realtoxicity.jsonl"]

        jd = tmp_path / "jobs" / "jd"
        jd.mkdir()
        judged = {k: bench[k] for k in ("alpaca_eval", "red_instruct")}
        judge_stage.run(jd, typed({"stage": "judge", "axes": {}, "target": {"job": "ev"}, "benchmarks": judged}),
                        threading.Event())
        assert len(srv.requests) == 3 + 3  # num_prompts of each, at one checkpoint
    res = json.loads((jd / "judge.json").read_text())["checkpoints"]
    assert list(res) == ["final"] and set(res["final"]) == {"alpaca_eval", "red_instruct"}
