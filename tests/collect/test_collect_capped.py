"""Issue 25 item 8: collect shows how many answers the model's context capped (eval.json `capped`)."""

from __future__ import annotations

import csv
import json

from alignkit.cli.main import main
from tests.fixtures.synthetic_study import write_study


def test_collect_lists_and_counts_capped_answers(tmp_path, capsys):
    root = tmp_path / "sweep"
    manifest = write_study(root, models=("mistral-7b",), preferences=("helpful",), methods=("sft",),
                           seeds=(0,), steps=(), merges=False)
    ev = next(j for j in manifest["jobs"] if j["stage"] == "eval")
    path = root / "jobs" / ev["id"] / "eval.json"
    result = json.loads(path.read_text())
    result["checkpoints"]["final"]["alpaca_eval"] = {
        "n": 805, "judged": True, "max_new_tokens": 2048, "capped": 805, "no_room": 0, "context": 2048,
        "min_budget": 1436}
    result["checkpoints"]["final"]["red_instruct"] = {
        "n": 200, "judged": True, "max_new_tokens": 500, "capped": 0, "no_room": 0, "context": 2048, "min_budget": 500}
    path.write_text(json.dumps(result))
    assert main(["collect", str(root), "--format", "csv", "--no-sacct"]) == 0
    out = capsys.readouterr().out
    assert "capped answers: 805 of 805 in 1 eval entries had fewer new tokens than max_new_tokens" in out
    with open(root / "collect" / "capped.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["job_id"], r["benchmark"], r["capped"], r["context"], r["min_budget"]) for r in rows] == \
        [(ev["id"], "alpaca_eval", "805", "2048", "1436")]
    digest = json.loads((root / "collect" / "collect.json").read_text())
    assert digest["capped_answers"] == {"entries": 1, "answers": 805, "no_room": 0, "of": 805}


def test_no_capped_answers_no_file(tmp_path, capsys):
    root = tmp_path / "sweep"
    write_study(root, models=("mistral-7b",), preferences=("helpful",), methods=("sft",), seeds=(0,), steps=(),
                merges=False)
    assert main(["collect", str(root), "--format", "csv", "--no-sacct"]) == 0
    assert "capped answers" not in capsys.readouterr().out
    assert not (root / "collect" / "capped.csv").exists()
