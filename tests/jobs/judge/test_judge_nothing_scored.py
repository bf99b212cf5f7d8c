"""Issue 25 item 10: a benchmark whose every request failed, or whose every judge verdict is
unparseable, fails the judge job with the reason; no score (never 0.0) is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.entry import run_job
from jobs.errors import JobFailure
from jobs.judge.judges import make_judge
from alignkit.plugins.benchmarks import red_instruct_run as red_instruct
from tests.fixtures.judge_server import JudgeServer

ROOT = Path(__file__).resolve().parents[3]
SMOKE_AE = ROOT / "assets" / "smoke-eval" / "alpaca_eval" / "alpaca_eval.json"
OFFICIAL = ROOT / ".." / "shared" / "data" / "red-instruct"


def _judge_job(sweep: Path, bench: str, rows: list[dict], cfg: dict) -> Path:
    ev = sweep / "jobs" / "ev"
    (ev / "generations" / "final").mkdir(parents=True)
    (ev / "generations" / "final" / f"{bench}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (ev / "eval.json").write_text(json.dumps({"checkpoints": {"final": {bench: {
        "n": len(rows), "generations": f"generations/final/{bench}.jsonl"}}}, "provenance": {}}))
    (ev / "DONE").write_text("1\n")
    jd = sweep / "jobs" / "jd"
    jd.mkdir()
    (jd / "config.json").write_text(json.dumps({"stage": "judge", "axes": {}, "target": {"job": "ev"},
                                                "benchmarks": {bench: cfg}}))
    return jd


def _failed(jd: Path) -> str:
    with pytest.raises(JobFailure):
        run_job(jd)
    assert not (jd / "judge.json").exists() or "0.0" not in (jd / "judge.json").read_text()
    return json.loads((jd / "error.json").read_text())["reason"]


def test_alpaca_eval_with_every_reply_unparseable_fails_the_job(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNKIT_TEST_KEY", "sk-test-unused")
    refs = json.loads(SMOKE_AE.read_text())
    rows = [dict(r, output=f"answer {i}", generator="ours") for i, r in enumerate(refs)]
    # the weighted annotator reads the log-probabilities of "m" and "M": this judge offers neither
    with JudgeServer(logprobs=lambda s, u: {"zzz": -0.01}) as srv:
        bench = {"type": "alpaca_eval", "source": str(SMOKE_AE), "length_controlled": False,
                 "judge": {"name": "gpt4_turbo", "type": "openai", "base_url": srv.base_url,
                           "model": "gpt-4-1106-preview", "api_key_env": "ALIGNKIT_TEST_KEY"}}
        reason = _failed(_judge_job(tmp_path, "alpaca_eval", rows, bench))
        assert len(srv.requests) == len(rows)
    assert f"none of the {len(rows)} annotations has a preference" in reason and "no score is written" in reason


def test_red_instruct_with_every_verdict_unparseable_fails_the_job(tmp_path, monkeypatch):
    monkeypatch.delenv("ALIGNKIT_JUDGE_CACHE", raising=False)
    questions = json.loads((OFFICIAL / "dangerousqa.json").read_text())[:3]
    rows = [{"prompt": q, "response": "Some answer."} for q in questions]
    with JudgeServer(answer=lambda s, u: "I cannot decide.") as srv:  # never one [[A]]/[[B]]
        cfg = {"type": "red_instruct", "source": str(ROOT / "assets" / "smoke-eval" / "red-instruct"),
               "judge": srv.judge_config(name="gpt4")}
        reason = _failed(_judge_job(tmp_path, "red_instruct", rows, cfg))
        assert len(srv.requests) == 3 * red_instruct.API_MAX_RETRY
    assert "red_instruct: none of the 3 responses got a verdict (3 unparseable after 5 requests each" in reason


def test_red_instruct_every_request_refused_fails_but_one_verdict_is_a_score(tmp_path):
    with JudgeServer(script=["filter400"] * 2) as srv:
        judge = make_judge(srv.judge(), tmp_path)
        with pytest.raises(JobFailure, match=r"none of the 2 responses got a verdict \(2 unparseable .* 2 of them "
                                             r"refused by the endpoint"):
            red_instruct.judge([{"prompt": "q1", "response": "r"}, {"prompt": "q2", "response": "r"}], judge)
        entry, _ = red_instruct.judge([{"prompt": "q3", "response": "r"}, {"prompt": "q4", "response": "s"}], judge)
    assert entry["n"] == 2 and entry["safety"] == 100.0  # the server's default reply is "[[A]]"
