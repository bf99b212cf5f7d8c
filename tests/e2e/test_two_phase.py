"""A two-phase study end to end on the local executor (sweeps/tiny/two-phase.yaml, issue 21 item 6):
`submit` trains two LoRA ranks and runs mmlu on both, while alpaca_eval (`runs: selected`, judged)
waits for the selection; `collect` writes it; a second `submit` on the same spec and sweep adds
exactly the picked run's eval and judge jobs (deterministic ids, journal appended, nothing queued
twice); they complete and a second `collect` shows their rows."""

from __future__ import annotations

import csv
import json

import pytest

from alignkit.cli.main import main as cli
from alignkit.plan.compiler import load_plan
from alignkit.status.state import refresh
from tests.e2e import studies
from tests.slurm.conftest import wait_for
from tests.fixtures.written import written

pytestmark = [pytest.mark.slow]


def _submissions(sweep) -> list[dict]:
    lines = (sweep / "journal.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("type") == "submission"]


def test_two_phase_study_adds_the_selected_runs_jobs(sweep, capsys):
    spec = studies.copy_spec("two-phase", sweep)
    plan = load_plan(spec)
    awaiting = {j.id: j for j in plan.awaiting}
    assert sorted(j.stage for j in awaiting.values()) == ["eval", "eval", "judge", "judge"]
    assert all(set(written(j)["benchmarks"]) == {"alpaca_eval"} for j in awaiting.values())

    # phase one: trains and their mmlu evals; status counts the rest as waiting for the selection
    sd, jobs = studies.run(spec)
    assert sorted(j.stage for j in jobs) == ["eval", "eval", "train", "train"]
    st = refresh(sd)
    assert st.awaiting_selection == {"eval": 2, "judge": 2} and st.to_json()["awaiting_selection"] == st.awaiting_selection
    first_journal = (sd.root / "journal.jsonl").read_text()

    capsys.readouterr()
    rows, out = studies.collect(sd.root)
    assert "4 job(s) of runs: selected benchmarks wait for the selection" in capsys.readouterr().out
    assert json.loads((out / "collect.json").read_text())["awaiting_selection"] == 4
    assert not any(r["benchmark"] == "alpaca_eval" for r in rows)   # not run, not a hole either
    with open(out / "selection.csv", newline="") as f:
        (chosen,) = list(csv.DictReader(f))
    losses = {}
    for j in jobs:
        if j.stage == "train":
            cfg = json.loads((sd.job(j.id) / "config.json").read_text())
            val = json.loads((sd.job(j.id) / "train_metrics.json").read_text())["validation"]["final"]["loss"]
            losses[cfg["method"]["lora"]["r"]] = (val, j.id)
    best = min(losses, key=lambda r: losses[r][0])
    assert int(chosen["method.lora.r"]) == best
    picked_run = losses[best][1]

    # phase two: the same spec and sweep; exactly the picked run's eval + judge are queued
    capsys.readouterr()
    assert cli(["submit", str(spec), "--executor", "local", "--skip-preflight"]) == 0
    said = capsys.readouterr().out
    assert "1 run(s) picked" in said and "left alone: 4 COMPLETED" in said and "queued 2 job(s)" in said, said
    journal = (sd.root / "journal.jsonl").read_text()
    assert journal.startswith(first_journal)   # appended, not rewritten
    subs = _submissions(sd.root)
    later = [json.loads(r) for r in journal[len(first_journal):].splitlines()]
    new = {jid for r in later if r.get("type") == "submission" for jid in r["jobs"]}
    want = {jid for jid, j in awaiting.items() if j.depends_on == (picked_run,)
            or awaiting.get(j.depends_on[0], None) is not None and awaiting[j.depends_on[0]].depends_on == (picked_run,)}
    assert new == want and len(want) == 2    # the ids plan compiled before the selection existed
    queued_before = {jid for r in map(json.loads, first_journal.splitlines()) if r.get("type") == "submission"
                     for jid in r["jobs"]}
    assert not new & queued_before
    manifest = studies.manifest(sd.root)
    assert "awaiting_selection" not in manifest and want <= {j["id"] for j in manifest["jobs"]}

    st = wait_for(lambda: (s := refresh(sd)) and all(j.state in studies.ENDED for j in s.jobs) and s, 300,
                  "the selected jobs to end", every=1)
    assert {j.id: j.state for j in st.jobs if j.id in want} == {jid: "COMPLETED" for jid in want}
    assert len(st.jobs) == 6 and st.awaiting_selection == {}

    rows, out = studies.collect(sd.root)
    assert json.loads((out / "collect.json").read_text())["awaiting_selection"] == 0
    alpaca = [r for r in rows if r["benchmark"] == "alpaca_eval" and r["value"]]
    assert alpaca and {r["method.lora.r"] for r in alpaca} == {str(best)}
    assert {r["stage"] for r in alpaca} >= {"judge"}

    # a third submit changes nothing
    assert cli(["submit", str(spec), "--executor", "local", "--skip-preflight"]) == 0
    assert len(_submissions(sd.root)) == len(subs)
