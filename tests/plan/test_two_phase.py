"""Two-phase studies (issue 21 item 6; alignkit/plan/selected.py): a benchmark with `runs: selected`
is compiled for every run but waits for the selection; plan and status count those jobs; a submit
after collect takes exactly the picked runs' jobs (ids fixed before the selection exists); bad input
is one located line, exit 2. The whole flow on the local executor: tests/e2e/test_two_phase.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alignkit.cli.main import main
from alignkit.contract.errors import UserError
from alignkit.submit.launch import write_sweep
from alignkit.plan import selected
from alignkit.plan.compiler import load_plan
from alignkit.status.state import refresh
from alignkit.status.view import render_arrays
from alignkit.submit.sweepdir import SweepDir
from tests.e2e.studies import copy_spec
from tests.fixtures.written import written


def _spec(tmp_path: Path, change=None, name: str = "two-phase.yaml") -> Path:
    d = yaml.safe_load(copy_spec("two-phase", tmp_path).read_text())
    if change:
        change(d)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _error(tmp_path, capsys, change) -> str:
    assert main(["plan", str(_spec(tmp_path, change))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_plan_counts_the_jobs_waiting_for_the_selection(tmp_path, capsys):
    spec = _spec(tmp_path)
    plan = load_plan(spec)
    assert sorted(j.stage for j in plan.jobs) == ["eval", "eval", "train", "train"]
    assert all(set(written(j)["benchmarks"]) == {"mmlu"} for j in plan.jobs if j.stage == "eval")
    assert sorted(j.stage for j in plan.awaiting) == ["eval", "eval", "judge", "judge"]
    assert all(j.name.endswith(("/eval-selected", "/judge-selected")) for j in plan.awaiting)
    waiting = plan.summary()["awaiting_selection"]
    judges = waiting.pop("judges")
    assert waiting == {"jobs": 4, "jobs_per_stage": {"eval": 2, "judge": 2}, "benchmarks": ["alpaca_eval"],
                       "runs": 2, "selected_runs": [1, 1]}
    # the second phase's judge calls: one run's (num_prompts 2 at the final checkpoint), not both runs'
    assert judges["tiny"]["calls"] == 2 and plan.summary()["judges"] == {}
    assert main(["plan", str(spec)]) == 0
    assert ("waiting for the selection: alpaca_eval on the 1 of 2 runs select: picks (1 eval + 1 judge job(s) "
            "per run;") in capsys.readouterr().out
    assert main(["plan", str(spec), "--json", "--summary"]) == 0
    s = json.loads(capsys.readouterr().out)["summary"]
    assert s["jobs"] == 4 and s["awaiting_selection"]["jobs_per_stage"] == {"eval": 2, "judge": 2}


def test_selected_jobs_are_what_any_eval_of_the_benchmark_would_be(tmp_path):
    """Their ids come from their configs alone: the eval a plain study would run for alpaca_eval."""
    plan = load_plan(_spec(tmp_path))

    def plain(d):
        del d["evals"]["benchmarks"]["mmlu"]
        del d["evals"]["benchmarks"]["alpaca_eval"]["runs"]
        del d["select"]
    other = load_plan(_spec(tmp_path, plain, "plain.yaml"))
    assert {j.id for j in plan.awaiting} == {j.id for j in other.jobs if j.stage in ("eval", "judge")}
    assert not other.awaiting and "awaiting_selection" not in other.summary()


def _collect_json(sweep: Path, groups: list[dict], **select) -> None:
    sel = {"metric": "validation_loss", "goal": "min", "over": ["method.lora.r"], "by": [], "checkpoint": "final",
           **select, "groups": groups}
    (sweep / "collect").mkdir(parents=True, exist_ok=True)
    (sweep / "collect" / "collect.json").write_text(json.dumps({"selection": sel}))


def _row(r, value=0.5, n_missing=0) -> dict:
    return {"method.lora.r": r, "metric": "validation_loss", "goal": "min", "checkpoint": "final", "value": value,
            "n": 1, "n_missing": n_missing, "note": ""}


def test_apply_takes_exactly_the_picked_runs_jobs(tmp_path):
    plan = load_plan(_spec(tmp_path))
    before = {j.id for j in plan.jobs}
    assert selected.apply(plan, plan.output_dir).source is None   # no collect yet: all keep waiting
    assert len(plan.awaiting) == 4 and {j.id for j in plan.jobs} == before
    _collect_json(plan.output_dir, [_row(8)])
    runs = {written(j)["axes"]["method.lora.r"]: j.id for j in plan.jobs if j.stage == "train"}
    got = selected.apply(plan, plan.output_dir)
    assert got.runs == 1 and got.dropped == 2 and not plan.awaiting and not got.notes
    added = {j.id: j for j in got.added}
    assert {j.id for j in plan.jobs} == before | set(added)
    ev = next(j for j in got.added if j.stage == "eval")
    assert ev.depends_on == (runs[8],) and written(ev)["target"]["job"] == runs[8]
    assert next(j for j in got.added if j.stage == "judge").depends_on == (ev.id,)


def test_a_group_without_a_choice_keeps_waiting(tmp_path):
    plan = load_plan(_spec(tmp_path))
    _collect_json(plan.output_dir, [_row(None, value=None, n_missing=2)])
    got = selected.apply(plan, plan.output_dir)
    assert got.source is not None and not got.added and len(plan.awaiting) == 4
    plan = load_plan(_spec(tmp_path))
    _collect_json(plan.output_dir, [_row(4, n_missing=1)])
    got = selected.apply(plan, plan.output_dir)
    assert got.notes == ["selection for the study: chosen with 1 of its runs without a value (collect ran before "
                         "they ended?)"]


@pytest.mark.parametrize("write,key", [
    (lambda p: p.write_text("{not json"), None),
    (lambda p: p.write_text(json.dumps({"selection": None})), "selection"),
    (lambda p: p.write_text(json.dumps({"selection": {"metric": "mmlu", "goal": "min", "over": ["method.lora.r"],
                                                      "by": [], "checkpoint": "final", "groups": []}})),
     "selection.metric"),
    (lambda p: p.write_text(json.dumps({"selection": {"metric": "validation_loss", "goal": "min",
                                                      "over": ["method.lora.r"], "by": [], "checkpoint": "final",
                                                      "groups": "x"}})), "selection.groups"),
])
def test_a_bad_or_stale_selection_is_one_line_naming_the_file_and_key(tmp_path, write, key):
    plan = load_plan(_spec(tmp_path))
    path = plan.output_dir / "collect" / "collect.json"
    path.parent.mkdir(parents=True)
    write(path)
    with pytest.raises(UserError) as e:
        selected.apply(plan, plan.output_dir)
    line = str(e.value)
    assert line.startswith(f"{path}: ") and "\n" not in line
    if key:
        assert f"key '{key}'" in line


def test_submit_refuses_a_stale_selection_with_exit_2(tmp_path, capsys):
    spec = _spec(tmp_path)
    plan = load_plan(spec)
    _collect_json(plan.output_dir, [_row(8)], goal="max")
    assert main(["submit", str(spec), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "collect.json: key 'selection.goal'" in err[0]
    assert not (plan.output_dir / "manifest.json").exists()


def test_status_counts_the_jobs_waiting_for_the_selection(tmp_path):
    plan = load_plan(_spec(tmp_path))
    sd = SweepDir.of(plan.output_dir)
    write_sweep(plan, sd)
    st = refresh(sd)
    assert st.awaiting_selection == {"eval": 2, "judge": 2}
    assert st.to_json()["awaiting_selection"] == {"eval": 2, "judge": 2}
    assert len(st.jobs) == 4   # the waiting ones are no jobs of the study yet
    text = render_arrays(st, 120, 30)
    assert "waiting for the selection: 2 eval, 2 judge of runs: selected benchmarks" in text
    assert max(map(len, text.splitlines())) <= 120
    # once the selection decided every run, the manifest lists nothing waiting
    _collect_json(plan.output_dir, [_row(4)])
    plan = load_plan(_spec(tmp_path))
    selected.apply(plan, plan.output_dir)
    write_sweep(plan, sd)
    st = refresh(sd)
    assert st.awaiting_selection == {} and len(st.jobs) == 6 and "awaiting_selection" not in st.to_json()


def test_bad_runs_values_and_circular_selections_are_plan_errors(tmp_path, capsys):
    spec_file = str(tmp_path / "two-phase.yaml")

    def no_select(d):
        del d["select"]
    line = _error(tmp_path, capsys, no_select)
    assert line.startswith(f"alignkit plan: error: {spec_file}:") and \
        "evals.benchmarks.alpaca_eval.runs: 'selected' evaluates only the runs select: picks" in line

    def typo(d):
        d["evals"]["benchmarks"]["alpaca_eval"]["runs"] = "chosen"
    assert "evals.benchmarks.alpaca_eval.runs" in _error(tmp_path, capsys, typo)

    def circular(d):
        d["select"] = {"metric": "alpaca_eval", "goal": "max", "over": ["method.lora.r"]}
    assert "select.metric: 'alpaca_eval': benchmark 'alpaca_eval' runs only on the runs the selection picks" in \
        _error(tmp_path, capsys, circular)

    def misspelled(d):
        d["select"]["metric"] = "validaton_loss"
    assert "select.metric: 'validaton_loss' is not a metric this study produces; did you mean 'validation_loss'?" \
        in _error(tmp_path, capsys, misspelled)


def test_per_group_choices_pick_every_seed_of_the_chosen_candidate(tmp_path):
    """sweeps/tiny/hparam-search.yaml (SFT r x alpha, DPO r x alpha, select per method) with two seeds
    and a selected benchmark: each method's chosen (r, alpha) picks both its seeds, nothing else."""
    d = yaml.safe_load(copy_spec("hparam-search", tmp_path).read_text())
    d["grid"]["seed"] = [0, 1]
    d["evals"] = {"benchmarks": {"mmlu": {"type": "lm_eval", "task": "smoke_mmlu", "runs": "selected",
                                          "include_path": str(Path(__file__).parents[2] / "assets" / "smoke-eval" / "tasks"),
                                          "limit": 2, "metric": "acc"}}}
    spec = tmp_path / "search.yaml"
    spec.write_text(yaml.safe_dump(d, sort_keys=False))
    plan = load_plan(spec)
    assert len(plan.awaiting) == 16 and selected.expected_runs(plan) == (4, 4)   # 2 methods x 2 seeds
    _collect_json(plan.output_dir, [
        {"method": "sft", "method.lora.r": 8, "method.lora.alpha": 16, "value": 1.2, "n": 2, "n_missing": 0},
        {"method": "dpo", "method.lora.r": 2, "method.lora.alpha": 8, "value": 0.6, "n": 2, "n_missing": 0}],
        over=["method.lora.r", "method.lora.alpha"], by=["method"])
    got = selected.apply(plan, plan.output_dir)
    picked = {(written(j)["axes"]["method"], written(j)["axes"]["method.lora.r"], written(j)["axes"]["method.lora.alpha"],
               written(j)["axes"]["seed"]) for j in got.added}
    assert picked == {(m, r, a, s) for m, r, a in (("sft", 8, 16), ("dpo", 2, 8)) for s in (0, 1)}
    assert got.runs == 4 and got.dropped == 12 and not plan.awaiting
