"""Chained stages (issue 14 item 2) at plan time: sweeps/sft-then-dpo.yaml's jobs and dependencies,
and the one-line refusals of broken chains. Expected counts are products of the spec's list
lengths, worked out by hand in each test's comment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alignkit.plan.compiler import load_plan
from alignkit.contract.errors import SpecError
from tests.fixtures.written import written

ROOT = Path(__file__).resolve().parents[2]
FULL = ROOT / "sweeps" / "sft-then-dpo.yaml"
SMOKE = ROOT / "sweeps" / "tiny" / "sft-then-dpo.yaml"
OTHER = ("model", "dataset", "preference", "peft", "seed")


def test_sft_then_dpo_plan_jobs_and_dependencies(tmp_path):
    plan = load_plan(FULL, output_dir=tmp_path / "out")
    trains = [j for j in plan.jobs if j.stage == "train"]
    by_id = plan.by_id()
    # 2 models x 2 datasets x 2 preferences x 2 PEFT x 5 seeds = 80 runs per method, 3 methods
    assert len(trains) == 240
    sft = {tuple(written(j)["axes"][a] for a in OTHER): j for j in trains if written(j)["axes"]["method"] == "sft"}
    assert len(sft) == 80 and all(not j.depends_on and "init" not in written(j) for j in sft.values())
    for label, mode in (("sft>dpo", "continue"), ("sft>dpo-merged", "merge")):
        chained = [j for j in trains if written(j)["axes"]["method"] == label]
        assert len(chained) == 80
        for j in chained:
            up = sft[tuple(written(j)["axes"][a] for a in OTHER)]
            assert j.depends_on == (up.id,) and written(j)["init"] == {"job": up.id, "mode": mode}
            assert f"/{label}/" in j.name and written(j)["method"]["type"] == "dpo"
            assert "init_from" not in written(j)["method"] and "init_mode" not in written(j)["method"]
            evals = [e for e in plan.jobs if e.stage == "eval" and e.depends_on == (j.id,)]
            assert len(evals) == 1 and written(evals[0])["axes"]["method"] == label
    assert {written(j)["model"]["name"] for j in trains} == {"llama-7b", "mistral-7b"}  # the pre-trained two
    assert {written(j)["model"]["kind"] for j in trains} == {"pretrained"}
    # merges: slerp and dare over preference, of sft and sft>dpo (continue) on BeaverTails:
    # 2 merges x 2 models x 2 methods x 2 PEFT x 5 seeds = 80; merge-mode runs are left out (own bases)
    merges = [j for j in plan.jobs if j.stage == "merge"]
    assert len(merges) == 80
    assert {written(j)["axes"]["method"] for j in merges} == {"sft", "sft>dpo"}
    for m in merges:
        assert all(written(by_id[i])["axes"]["method"] == written(m)["axes"]["method"] for i in m.depends_on)
    # the chained trains form their own array, after the SFT array; the DPO resource override applies
    keys = plan.array_keys()
    chained_keys = {keys[j.id] for j in trains if j.depends_on}
    assert all(k[2] is not None and k[2][0] == "train" for k in chained_keys)
    assert {j.resources.time_min for j in trains if j.depends_on} == {240}
    assert {j.resources.time_min for j in trains if not j.depends_on} == {120}


def test_chained_ids_follow_the_upstream_and_plain_configs_are_unchanged(tmp_path):
    spec = yaml.safe_load(SMOKE.read_text())
    plan = load_plan(SMOKE, output_dir=tmp_path / "a")
    spec["methods"]["sft"]["learning_rate"] = 1.0e-3  # only SFT changes
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(spec).replace("../../assets", str(ROOT / "assets")))
    plan2 = load_plan(changed, output_dir=tmp_path / "b")
    names = lambda p: {j.name: j.id for j in p.jobs if j.stage == "train"}  # noqa: E731
    a, b = names(plan), names(plan2)
    assert a.keys() == b.keys() and all(a[n] != b[n] for n in a)  # DPO runs follow their SFT run's id
    # a plain DPO method's block is what it was before chains existed: no init keys anywhere
    spec["methods"]["dpo"].pop("init_from"), spec["methods"]["dpo"].pop("init_mode")
    spec["grid"]["method"] = ["dpo"]
    spec["merges"] = []
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(spec).replace("../../assets", str(ROOT / "assets")))
    for j in load_plan(plain, output_dir=tmp_path / "c").jobs:
        assert "init" not in written(j) and not j.depends_on or j.stage != "train"
        assert written(j)["axes"]["method"] == "dpo"


def _problems(tmp_path: Path, edit) -> list[str]:
    spec = yaml.safe_load(SMOKE.read_text())
    edit(spec)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False).replace("../../assets", str(ROOT / "assets")))
    with pytest.raises(SpecError) as info:
        load_plan(path, output_dir=tmp_path / "out")
    return info.value.problems


@pytest.mark.parametrize("edit, expected", [
    (lambda s: s["methods"]["dpo"].update(init_from={"method": "ppo"}),
     "methods.dpo.init_from.method: unknown method 'ppo' (known: sft, dpo, dpo-merged)"),
    (lambda s: s["methods"]["sft"].update(init_from={"method": "dpo"}), "init_from makes a cycle"),
    (lambda s: s["methods"]["dpo"].update(init_from={"method": "dpo"}), "init_from makes a cycle (dpo > dpo)"),
    (lambda s: s["methods"]["dpo"]["lora"].update(r=16), "methods.dpo.lora: init_mode continue keeps training"),
    (lambda s: s["methods"]["sft"].update(init_mode="merge"), "methods.sft.init_mode: only a chained method"),
    (lambda s: s["methods"]["dpo"].update(init_mode="restart"), "methods.dpo.init_mode"),
    (lambda s: s.update(exclude=[{"method": "sft", "peft": "qlora"}]),
     "methods.dpo.init_from.method: run 'tiny-llama/beavertails/harmless/dpo/qlora/s0' starts from a 'sft' run"),
    (lambda s: s["grid"].update(method=["dpo"]), "starts from a 'sft' run with the same other axes, which the grid"),
])
def test_broken_chains_are_one_line_errors(tmp_path, edit, expected):
    problems = _problems(tmp_path, edit)
    assert any(expected in p for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_merge_of_merge_mode_runs_on_different_bases_is_refused(tmp_path):
    def edit(s):
        s["merges"] = [{"name": "bad", "method": "linear", "combine": {"method": ["sft", "dpo-merged"]},
                        "parameters": {"weights": [0.5, 0.5]}}]
    assert any("merges[0]: merge 'bad' combines runs on different bases" in p for p in _problems(tmp_path, edit))


def test_smoke_counterpart_plan(tmp_path):
    plan = load_plan(SMOKE, output_dir=tmp_path / "out")
    stages = {s: sum(1 for j in plan.jobs if j.stage == s) for s in ("train", "eval", "merge")}
    # 3 methods x 2 PEFT = 6 runs, each evaluated; one merge (sft + sft>dpo on LoRA), evaluated
    assert stages == {"train": 6, "eval": 7, "merge": 1}
    labels = sorted(written(j)["axes"]["method"] for j in plan.jobs if j.stage == "train")
    assert labels == ["sft", "sft", "sft>dpo", "sft>dpo", "sft>dpo-merged", "sft>dpo-merged"]


def _plan(tmp_path: Path, edit):
    spec = yaml.safe_load(SMOKE.read_text())
    edit(spec)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False).replace("../../assets", str(ROOT / "assets")))
    return load_plan(path, output_dir=tmp_path / "out")


def test_a_dotted_method_axis_of_both_methods_pairs_runs_by_value(tmp_path):
    def edit(s):
        s["grid"].update(method=["sft", "dpo"], peft=["lora"])
        s["grid"]["method.lora.r"] = [8, 16]
        s["merges"] = []
    trains = [j for j in _plan(tmp_path, edit).jobs if j.stage == "train"]
    by_id = {j.id: j for j in trains}
    chained = [j for j in trains if j.depends_on]
    assert len(trains) == 4 and len(chained) == 2  # 2 methods x 2 ranks; each DPO rank after its SFT rank
    for j in chained:
        up = by_id[j.depends_on[0]]
        assert written(up)["axes"]["method.lora.r"] == written(j)["axes"]["method.lora.r"] == written(j)["method"]["lora"]["r"]


def test_continue_refuses_a_dotted_lora_axis_of_the_chained_method_only(tmp_path):
    def edit(s):
        s["grid"].update(method=["sft"], peft=["lora"])
        s["include"] = [{"method": "dpo", "method.lora.r": [16]}]
        s["merges"] = []
    with pytest.raises(SpecError) as info:
        _plan(tmp_path, edit)
    assert any("methods.dpo.lora: run 'tiny-llama/beavertails/harmless/sft/lora/s0' has lora" in p
               and "init_mode continue trains the upstream adapter" in p for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("path", [FULL, SMOKE])
def test_every_chained_config_loads_through_the_typed_contract(path, tmp_path):
    """What the jobs read: each config.json parses strictly, a chained run's `init` included."""
    from alignkit.contract import parse

    plan = load_plan(path, output_dir=tmp_path / "out")
    inits = 0
    for job in plan.jobs:
        typed = parse(written(job), f"{path.name}: {job.name}")
        assert typed == job.config, f"{job.name}: config.json does not read back as the compiled config"
        if job.stage == "train" and job.depends_on:
            assert typed.init is not None and typed.init.job == job.depends_on[0]
            inits += 1
    assert inits == (160 if path == FULL else 4)
