"""Issue 25 item 8: `plan` warns, one line per model and benchmark, when a benchmark's
max_new_tokens leaves no room for its prompts in a model whose config it can read."""

from __future__ import annotations

import json
import shutil

from alignkit.cli.main import main
from tests.fixtures.eval_fixtures import TINY
from tests.fixtures.spec_fixtures import base, write


def _model(tmp_path, name, context):
    d = tmp_path / name
    shutil.copytree(TINY, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["max_position_embeddings"] = context
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def _warnings(tmp_path, capsys, mutate):
    d = base()
    mutate(d)
    assert main(["plan", str(write(tmp_path, d))]) == 0
    return [x for x in capsys.readouterr().err.splitlines() if "leaves no room" in x]


def test_plan_warns_once_per_model_and_benchmark(tmp_path, capsys):
    def mutate(d):
        d["models"]["m1"]["source"] = _model(tmp_path, "llama-like", 2048)  # LLaMA-1's context
        d["models"]["m2"]["source"] = _model(tmp_path, "long", 32768)  # room enough
        d["evals"]["benchmarks"]["ae"]["max_new_tokens"] = 2048
        d["evals"]["benchmarks"]["red"] = {"type": "red_instruct", "source": "declare-lab/red-instruct",
                                           "judge": "j", "max_new_tokens": 4096}
    lines = _warnings(tmp_path, capsys, mutate)
    assert len(lines) == 2, lines  # m1 x {ae, red}; m2 has room; many jobs, one line each
    assert lines[0].startswith("alignkit plan: warning: ") and "evals.benchmarks.ae.max_new_tokens: 2048 leaves no room" in lines[0]
    assert "model m1's 2048-token context" in lines[0] and "llama-like/config.json" in lines[0]
    assert "evals.benchmarks.red.max_new_tokens: 4096" in lines[1]


def test_no_warning_with_room_or_an_unreadable_config(tmp_path, capsys):
    def mutate(d):
        d["models"]["m1"]["source"] = _model(tmp_path, "llama-like", 2048)
        d["evals"]["benchmarks"]["ae"]["max_new_tokens"] = 1024  # the default would be 2048: no room
    assert _warnings(tmp_path, capsys, mutate) == []
    # the default max_new_tokens (AlpacaEval's 2048) reaches it; a hub model not in the cache is not checked
    assert len(_warnings(tmp_path, capsys, lambda d: d["models"]["m1"].update(
        source=_model(tmp_path, "again", 2048)))) == 1
