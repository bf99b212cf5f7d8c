"""AlpacaEval through the alpaca_eval package: the published leaderboard number from real annotations.

../shared/data/alpaca_eval/ holds vicuna-7b-v1.3's real outputs, AlpacaEval 2's reference outputs
(gpt4_1106_preview) and the official weighted_alpaca_eval_gpt4_turbo annotations of the pair; the
leaderboard row (leaderboard-rows.csv) says win_rate 4.6425. The judge stage (jobs/judge/stage.py, the
code a real study runs) must give that number with the annotations as its cache, asking nothing.
"""

from __future__ import annotations

import csv
import json
import shutil
import socket
import threading
from pathlib import Path

import pytest

from jobs.judge import stage as judge_stage
from jobs.entry import run_job
from jobs.errors import JobFailure
from alignkit.contract.common import JudgeClientConfig
from alignkit.plugins.benchmarks import alpaca_eval_run as alpaca_eval
from alignkit.plugins.benchmarks.alpaca_eval import DEFAULT_ANNOTATOR
from tests.fixtures.eval_fixtures import bench_config
from tests.fixtures.judge_server import JudgeServer
from tests.fixtures.train_configs import typed

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data" / "alpaca_eval"
ANNOTATIONS = DATA / "vicuna-7b-v1.3.weighted_alpaca_eval_gpt4_turbo.annotations.json"
SMOKE = ROOT / "assets" / "smoke-eval" / "alpaca_eval" / "alpaca_eval.json"
TINY = ROOT / "assets" / "tiny-llama"


def _leaderboard() -> dict:
    with open(DATA / "leaderboard-rows.csv", newline="") as f:
        return next(r for r in csv.DictReader(f) if r[""] == "vicuna-7b-v1.3")


def _eval_job(sweep: Path, outputs: list[dict], bench: dict, ckpts=("final",)) -> tuple[Path, dict]:
    """An eval job's outputs written by hand (the judge stage needs no model), and a judge job for it."""
    ev = sweep / "jobs" / "ev"
    for c in ckpts:
        gen = ev / "generations" / c
        gen.mkdir(parents=True)
        (gen / "alpaca_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in outputs))
    entries = {c: {"alpaca_eval": {"n": len(outputs), "generations": f"generations/{c}/alpaca_eval.jsonl"}}
               for c in ckpts}
    (ev / "eval.json").write_text(json.dumps({"checkpoints": entries, "provenance": {}}))
    (ev / "DONE").write_text("1\n")
    jd = sweep / "jobs" / "jd"
    jd.mkdir(parents=True)
    cfg = {"stage": "judge", "axes": {}, "target": {"job": "ev"}, "benchmarks": {"alpaca_eval": bench}}
    (jd / "config.json").write_text(json.dumps(cfg))
    return jd, cfg


@pytest.fixture
def no_network(monkeypatch):
    """Every outgoing connection attempt is recorded and refused."""
    attempts: list = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise OSError(f"test: network access to {address} refused")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


API_JUDGE = {"name": "gpt4_turbo", "type": "openai", "base_url": "https://api.openai.com/v1",
             "model": "gpt-4-1106-preview", "api_key_env": "ALIGNKIT_TEST_OPENAI_KEY"}


def test_vicuna_real_annotations_give_the_leaderboard_win_rate_with_no_request(tmp_path, monkeypatch, no_network):
    monkeypatch.delenv("ALIGNKIT_JUDGE_CACHE", raising=False)
    monkeypatch.setenv("ALIGNKIT_TEST_OPENAI_KEY", "sk-test-never-used")
    outputs = json.loads((DATA / "vicuna-7b-v1.3.model_outputs.json").read_text())
    bench = {"type": "alpaca_eval", "source": str(DATA), "reference": "gpt4_1106_preview.model_outputs.json",
             "annotator": "weighted_alpaca_eval_gpt4_turbo", "length_controlled": False, "judge": API_JUDGE}
    jd, cfg = _eval_job(tmp_path, outputs, bench)
    # the package's own annotation cache for this eval job, seeded with the published annotations
    conf_path, _, _ = alpaca_eval.annotator_config("weighted_alpaca_eval_gpt4_turbo", "b")
    cache = alpaca_eval.cache_file(tmp_path / "judge_cache", "weighted_alpaca_eval_gpt4_turbo", conf_path,
                                   JudgeClientConfig(**API_JUDGE), "ev")
    cache.parent.mkdir(parents=True)
    shutil.copy(ANNOTATIONS, cache)

    assert run_job(jd) == "done"
    entry = json.loads((jd / "judge.json").read_text())["checkpoints"]["final"]["alpaca_eval"]
    row = _leaderboard()
    assert entry["win_rate"] == pytest.approx(4.6425, abs=1e-3)
    assert entry["win_rate"] == pytest.approx(float(row["win_rate"]), abs=1e-9)
    assert entry["win_rate_stderr"] == pytest.approx(float(row["standard_error"]), abs=1e-9)
    assert entry["discrete_win_rate"] == pytest.approx(float(row["discrete_win_rate"]), abs=1e-9)
    assert (entry["n_wins"], entry["n_wins_base"], entry["n_draws"], entry["n_total"]) == (31, 771, 3, 805)
    assert entry["avg_length"] == int(row["avg_length"])
    # zero API calls: nothing reached the completion function, no socket was opened
    assert entry["requests_made"] == 0 and no_network == []
    assert json.loads((jd / "judge.json").read_text())["provenance"]["requests_made"] == 0
    # what was used is recorded
    assert entry["annotator"] == "weighted_alpaca_eval_gpt4_turbo" and entry["annotator_model"] == "gpt-4-1106-preview"
    assert entry["reference"]["generator"] == "gpt4_1106_preview"
    assert entry["reference"]["file"] == "gpt4_1106_preview.model_outputs.json"
    assert entry["alpaca_eval_version"] == "0.6.6" and entry["length_controlled"] is False
    verdicts = [json.loads(line) for line in (jd / "verdicts" / "final" / "alpaca_eval.jsonl").open()]
    assert len(verdicts) == 805 and {v["generator_1"] for v in verdicts} == {"gpt4_1106_preview"}


def test_a_discrete_win_rate_is_not_alpaca_evals_number():
    """The README's check: dropping ties and counting only discrete verdicts gives 3.865, not 4.6425."""
    ann = json.loads(ANNOTATIONS.read_text())
    prefs = [float(a["preference"]) for a in ann if a["preference"] is not None]
    wins, losses = sum(p > 1.5 for p in prefs), sum(p < 1.5 for p in prefs)
    assert 100 * wins / (wins + losses) == pytest.approx(3.865, abs=1e-3)


def test_length_controlled_needs_its_two_files_and_says_so_before_any_request(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("ALIGNKIT_TEST_OPENAI_KEY", "sk-test-never-used")
    outputs = json.loads((DATA / "vicuna-7b-v1.3.model_outputs.json").read_text())[:3]
    refs = json.loads((DATA / "gpt4_1106_preview.model_outputs.json").read_text())
    bench = bench_config("alpaca_eval", source=str(DATA), length_controlled=True)
    with pytest.raises(JobFailure, match=r"no df_gamed.csv \(needed for the length-controlled win rate"):
        alpaca_eval.score(outputs, refs, bench, API_JUDGE, None, tmp_path, "ev", "benchmarks.alpaca_eval")
    assert no_network == []


def test_judge_model_must_be_the_annotator_configs(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNKIT_TEST_OPENAI_KEY", "sk-x-never-used")
    refs = json.loads(SMOKE.read_text())
    rows = [dict(r, output="x", generator="m") for r in refs]
    with pytest.raises(JobFailure, match="'gpt-4-0613' differs from the annotator config's model 'gpt-4-1106-preview'"):
        alpaca_eval.score(rows, refs, bench_config("alpaca_eval", source=str(SMOKE), length_controlled=False),
                          JudgeClientConfig(**dict(API_JUDGE, model="gpt-4-0613")), None, tmp_path, "ev", "b")
    with pytest.raises(JobFailure, match="no annotator config 'no_such_annotator'"):
        alpaca_eval.annotator_config("no_such_annotator", "b")
    with pytest.raises(JobFailure, match="not an alpaca_eval annotator config name"):
        alpaca_eval.annotator_config("../../etc", "b")


def _preferred_first(user: str) -> bool:
    """Our fake judge prefers the answer that says 'good'; is it the one shown as "m" (output_1)?"""
    first = user.split('"model_identifier": "m",')[1].split('"model_identifier": "M"')[0]
    return "good" in first


def test_api_judge_goes_through_the_packages_openai_client_and_a_rerun_asks_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("ALIGNKIT_JUDGE_CACHE", raising=False)
    monkeypatch.setenv("ALIGNKIT_TEST_OPENAI_KEY", "sk-test-1234567890")
    refs = json.loads(SMOKE.read_text())
    # the model is better on the first three instructions, worse on the last two
    outputs = [{"instruction": r["instruction"], "output": ("good " if i < 3 else "meh ") + str(i),
                "generator": "ours", "dataset": r["dataset"]} for i, r in enumerate(refs)]
    refs_bad = [dict(r, output=("meh " if i < 3 else "good ") + r["output"]) for i, r in enumerate(refs)]
    src = tmp_path / "alpaca_eval.json"
    src.write_text(json.dumps(refs_bad))
    lp = lambda s, u: {"m": -0.01, "M": -5.0} if _preferred_first(u) else {"M": -0.01, "m": -5.0}  # noqa: E731
    with JudgeServer(logprobs=lp) as srv:
        judge_cfg = dict(API_JUDGE, base_url=srv.base_url)
        bench = {"type": "alpaca_eval", "source": str(src), "length_controlled": False, "judge": judge_cfg}
        jd, cfg = _eval_job(tmp_path, outputs, bench)
        assert run_job(jd) == "done"
        assert len(srv.requests) == 5
        body = srv.requests[0]["body"]
        # the annotator config's request, from the package: model, one token, log-probs of the top 5
        assert (body["model"], body["max_tokens"], body["logprobs"], body["top_logprobs"]) == \
            ("gpt-4-1106-preview", 1, True, 5)
        headers = {k.lower(): v for k, v in srv.requests[0]["headers"].items()}
        assert headers["authorization"] == "Bearer sk-test-1234567890"
        entry = json.loads((jd / "judge.json").read_text())["checkpoints"]["final"]["alpaca_eval"]
        p_win = 1 / (1 + 2.718281828459045 ** -4.99)  # the package's weighted preference for a 'good' answer
        assert entry["win_rate"] == pytest.approx(100 * (3 * p_win + 2 * (1 - p_win)) / 5, abs=1e-6)
        assert entry["requests_made"] == 5 and entry["n"] == 5
        # rerun (a requeue): the package's cache answers everything
        (jd / "DONE").unlink()
        judge_stage.run(jd, typed(cfg), threading.Event())
        assert len(srv.requests) == 5
        again = json.loads((jd / "judge.json").read_text())["checkpoints"]["final"]["alpaca_eval"]
        assert again["win_rate"] == pytest.approx(entry["win_rate"], abs=1e-6) and again["requests_made"] == 0
        assert "sk-test-1234567890" not in "".join(p.read_text() for p in tmp_path.rglob("*.json*"))


def test_local_hf_judge_scores_offline_through_the_package_and_caches(tmp_path, monkeypatch, no_network):
    monkeypatch.delenv("ALIGNKIT_JUDGE_CACHE", raising=False)
    refs = json.loads(SMOKE.read_text())
    outputs = [{"instruction": r["instruction"], "output": f"answer {i}", "generator": "ours",
                "dataset": r["dataset"]} for i, r in enumerate(refs)]
    bench = {"type": "alpaca_eval", "source": str(SMOKE), "length_controlled": False,
             "judge": {"name": "tiny", "type": "hf", "source": str(TINY)}}
    jd, cfg = _eval_job(tmp_path, outputs, bench, ckpts=("10", "final"))
    assert run_job(jd) == "done"
    out = json.loads((jd / "judge.json").read_text())
    for ck in ("10", "final"):
        e = out["checkpoints"][ck]["alpaca_eval"]
        assert e["n"] == 5 and e["unparseable"] == 0 and 0 <= e["win_rate"] <= 100
        assert e["annotator"] == "weighted_alpaca_eval_gpt4_turbo" and e["judge"] == f"hf:{TINY}"
    # the same outputs at both checkpoints: the second is answered by the package's cache
    assert out["checkpoints"]["10"]["alpaca_eval"]["requests_made"] == 5
    assert out["checkpoints"]["final"]["alpaca_eval"]["requests_made"] == 0
    verdicts = [json.loads(line) for line in (jd / "verdicts" / "final" / "alpaca_eval.jsonl").open()]
    assert all(1 <= v["preference"] <= 2 for v in verdicts)  # the package's logprob_parser, not binarized
    (jd / "DONE").unlink()
    judge_stage.run(jd, typed(cfg), threading.Event())
    assert json.loads((jd / "judge.json").read_text())["provenance"]["requests_made"] == 0
    assert no_network == []


def _stand_in_lc_files(folder: Path) -> None:
    """Made-up files in the format of the hub's df_gamed.csv / instruction_difficulty.csv (the real ones
    are not in ../shared/data): they exercise the wiring, the package computes the number."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    difficulty = pd.Series(rng.normal(size=805), name="instruction_difficulty")
    difficulty.to_csv(folder / "instruction_difficulty.csv")
    pd.DataFrame([{"model": m, "index": i, "preference": rng.uniform(), "std_delta_len": rng.normal(),
                   "instruction_difficulty": difficulty[i], "not_gamed_baseline": False}
                  for m in ("verbose", "concise") for i in range(805)]).to_csv(folder / "df_gamed.csv", index=False)


def test_length_controlled_win_rate_is_the_packages_on_the_same_annotations(tmp_path, monkeypatch, no_network):
    import pandas as pd

    monkeypatch.delenv("ALIGNKIT_JUDGE_CACHE", raising=False)
    monkeypatch.setenv("ALIGNKIT_TEST_OPENAI_KEY", "sk-test-never-used")
    src = tmp_path / "data"
    src.mkdir()
    shutil.copy(DATA / "gpt4_1106_preview.model_outputs.json", src)
    _stand_in_lc_files(src)
    outputs = json.loads((DATA / "vicuna-7b-v1.3.model_outputs.json").read_text())
    bench = {"type": "alpaca_eval", "source": str(src), "reference": "gpt4_1106_preview.model_outputs.json",
             "length_controlled": True, "judge": API_JUDGE}
    jd, _ = _eval_job(tmp_path, outputs, bench)
    conf_path, _, _ = alpaca_eval.annotator_config(DEFAULT_ANNOTATOR, "b")
    cache = alpaca_eval.cache_file(tmp_path / "judge_cache", DEFAULT_ANNOTATOR, conf_path, JudgeClientConfig(**API_JUDGE), "ev")
    cache.parent.mkdir(parents=True)
    shutil.copy(ANNOTATIONS, cache)
    weights = Path(alpaca_eval.package().__file__).parent / "metrics" / "weights"
    existed = weights.exists()
    assert run_job(jd) == "done"
    entry = json.loads((jd / "judge.json").read_text())["checkpoints"]["final"]["alpaca_eval"]
    # the package's function, called directly on the published annotations with the same two files
    ae = alpaca_eval.package()
    with alpaca_eval._lc_files({f: src / f for f in alpaca_eval.LC_FILES}):
        direct = ae.metrics.get_length_controlled_winrate(pd.read_json(ANNOTATIONS), save_weights_dir=None)
    assert entry["length_controlled_winrate"] == pytest.approx(direct["length_controlled_winrate"], abs=1e-9)
    assert entry["win_rate"] == pytest.approx(4.6425, abs=1e-3) and entry["requests_made"] == 0
    assert no_network == [] and weights.exists() == existed  # nothing written into the installed package
