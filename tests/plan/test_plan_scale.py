"""plan at scale (issue 22 item 7): `--json` is the same text as before, `--json --summary`
leaves the jobs out, and a refusal counts the jobs the plan would really have."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from alignkit.plan.compiler import load_plan
from alignkit.plan.planjson import write_plan_json
from tests.fixtures.spec_fixtures import base, write

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sweep", ["full.yaml", "sft-then-dpo.yaml", "smoke.yaml"])
def test_json_text_is_the_stdlib_text(sweep, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    plan = load_plan(ROOT / "sweeps" / sweep)
    out = io.StringIO()
    write_plan_json(plan, out)
    assert out.getvalue() == json.dumps(plan.to_json(), allow_nan=False) + "\n"
    out = io.StringIO()
    write_plan_json(plan, out, summary_only=True)
    short = json.loads(out.getvalue())
    assert "jobs" not in short and short["summary"] == json.loads(json.dumps(plan.summary()))
    assert short["sweep"] == plan.sweep and short["axes"] == plan.axes


def test_refusal_counts_the_real_jobs(tmp_path, monkeypatch):
    """full.yaml's merges apply to Mistral on BeaverTails only: the list-length bound counts
    every run for each merge (2,442 for 1,388 jobs); the refusal names the real number."""
    d = yaml.safe_load((ROOT / "sweeps" / "full.yaml").read_text())
    d["profile"] = "local"
    d["evals"]["benchmarks"]["red_instruct"]["source"] = str(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    path = write(tmp_path, d)
    monkeypatch.setenv("ALIGNKIT_MAX_JOBS", "1387")
    with pytest.raises(Exception) as err:
        load_plan(path)
    assert "the grid expands to 1,388 jobs, beyond the limit of 1,387" in str(err.value)
    monkeypatch.setenv("ALIGNKIT_MAX_JOBS", "1388")
    assert len(load_plan(path).jobs) == 1388


def test_runs_beyond_the_limit_are_refused_before_expanding(tmp_path, monkeypatch):
    d = base()
    d["grid"]["seed"] = list(range(40_000))  # 1.28 million runs, over the default limit: never expanded
    monkeypatch.setenv("KEY", "x")
    with pytest.raises(Exception) as err:
        load_plan(write(tmp_path, d))
    assert "expands to up to" in str(err.value) and "refused before expanding" in str(err.value)


def test_cli_summary_flag(tmp_path, monkeypatch, capsys):
    from alignkit.cli.main import main
    monkeypatch.setenv("KEY", "x")
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, base())
    assert main(["plan", str(path), "--json", "--summary"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert main(["plan", str(path), "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert short == {k: v for k, v in full.items() if k != "jobs"} and len(full["jobs"]) == short["summary"]["jobs"]
