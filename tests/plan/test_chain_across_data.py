"""Chained stages across data (issue 21 item 3) at plan time: `init_from` naming the upstream run's
own dataset, preference or seed (SFT on chat data, DPO on preference data, in one spec), or an
adapter that exists already; each refusal one line naming the file and key, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alignkit.cli.main import main
from alignkit.contract.errors import SpecError
from alignkit.plan.compiler import load_plan
from alignkit.plan.preflight import spec_assets
from tests.fixtures.written import written

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "sweeps" / "tiny" / "sft-chat-then-dpo.yaml"


def _write(tmp_path: Path, edit=None, name: str = "spec.yaml") -> Path:
    spec = yaml.safe_load(TINY.read_text())
    if edit is not None:
        edit(spec)
    path = tmp_path / name
    text = yaml.safe_dump(spec, sort_keys=False)
    path.write_text(text.replace("../../assets", str(ROOT / "assets")).replace("../data", str(ROOT / "sweeps" / "data")))
    return path


def _trains(plan) -> dict[str, object]:
    return {written(j)["axes"]["method"]: j for j in plan.jobs if j.stage == "train"}


def test_sft_on_one_dataset_then_dpo_on_another_is_one_spec(tmp_path):
    plan = load_plan(TINY, output_dir=tmp_path / "out")
    trains = _trains(plan)
    assert set(trains) == {"sft", "sft>dpo"}  # zipped: SFT on chat/all, DPO on beavertails/harmless only
    sft, dpo = trains["sft"], trains["sft>dpo"]
    assert (written(sft)["axes"]["dataset"], written(sft)["axes"]["preference"]) == ("chat", "all")
    assert (written(dpo)["axes"]["dataset"], written(dpo)["axes"]["preference"]) == ("beavertails", "harmless")
    assert dpo.depends_on == (sft.id,)
    assert written(dpo)["init"] == {"job": sft.id, "mode": "continue"}  # the same two keys as every chain before
    assert written(dpo)["dataset"]["format"] == "beavertails" and written(sft)["dataset"]["source"].endswith("chat/chat.jsonl")
    # each run's eval waits for its own train job
    evals = {j.depends_on: j for j in plan.jobs if j.stage == "eval"}
    assert set(evals) == {(sft.id,), (dpo.id,)}


def test_named_seed_starts_every_seed_from_one_upstream_run(tmp_path):
    def edit(s):
        s["methods"]["dpo"]["init_from"]["seed"] = 0
        s["grid"]["seed"] = [0, 1, 2]
        s["exclude"] = [{"method": "sft", "seed": [1, 2]}]
    trains = [j for j in load_plan(_write(tmp_path, edit), output_dir=tmp_path / "out").jobs if j.stage == "train"]
    sft = [j for j in trains if written(j)["axes"]["method"] == "sft"]
    dpo = [j for j in trains if written(j)["axes"]["method"] == "sft>dpo"]
    # 1 SFT run (seed 0), 3 DPO seeds each after it, 3 distinct ids
    assert len(sft) == 1 and len(dpo) == 3 and {j.depends_on for j in dpo} == {(sft[0].id,)}
    assert sorted(written(j)["seed"] for j in dpo) == [0, 1, 2] and len({j.id for j in dpo}) == 3


def test_without_the_named_axes_the_chain_finds_no_upstream(tmp_path):
    """Before issue 21 this spec could not be written: the upstream had to share dataset and preference."""
    def edit(s):
        s["methods"]["dpo"]["init_from"] = {"method": "sft"}
    with pytest.raises(SpecError) as info:
        load_plan(_write(tmp_path, edit), output_dir=tmp_path / "out")
    assert any("methods.dpo.init_from.method: run 'tiny-llama/beavertails/harmless/dpo/lora/s0' starts from a "
               "'sft' run with the same other axes" in p for p in info.value.problems), info.value.problems


def test_a_named_upstream_the_grid_does_not_train_is_named(tmp_path):
    def edit(s):
        s["methods"]["dpo"]["init_from"]["preference"] = "helpful"
    with pytest.raises(SpecError) as info:
        load_plan(_write(tmp_path, edit), output_dir=tmp_path / "out")
    assert any("starts from a 'sft' run with (dataset chat, preference helpful) and the same other axes" in p
               for p in info.value.problems), info.value.problems


def _adapter(tmp_path: Path, r: int = 8) -> Path:
    """An adapter folder as PEFT writes it (the fields plan reads), with the tiny spec's LoRA shape."""
    folder = tmp_path / "sft-adapter"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": 16,
                                                            "target_modules": ["v_proj", "q_proj"]}))
    return folder


def test_init_from_an_adapter_that_exists(tmp_path):
    folder = _adapter(tmp_path)

    def edit(s, source=str(folder)):
        s["methods"] = {"dpo": {**s["methods"]["dpo"], "init_from": {"adapter": source}}}
        s["grid"].update(method=["dpo"], dataset=["beavertails"], preference=["harmless"])
        del s["zip"]
    plan = load_plan(_write(tmp_path, edit), output_dir=tmp_path / "out")
    (dpo,) = _trains(plan).values()
    assert dpo.depends_on == () and written(dpo)["axes"]["method"] == "dpo"
    assert written(dpo)["init"] == {"adapter": str(folder), "mode": "continue"}
    models, _ = spec_assets([{"config": written(j)} for j in plan.jobs])
    assert {"name": "init_from adapter of dpo", "source": str(folder), "revision": None, "adapter": True} in models
    # the id follows the adapter named; a hub id keeps its revision
    hub = load_plan(_write(tmp_path, lambda s: (edit(s, "org/sft-adapter"),
                                                s["methods"]["dpo"]["init_from"].update(revision="v1")), "hub.yaml"),
                    output_dir=tmp_path / "out2")
    (dpo2,) = _trains(hub).values()
    assert written(dpo2)["init"] == {"adapter": "org/sft-adapter", "mode": "continue", "revision": "v1"}
    assert dpo2.id != dpo.id
    from alignkit.contract import parse
    assert parse(written(dpo2), "hub").init.revision == "v1" and parse(written(dpo), "local").init.job is None


@pytest.mark.parametrize("init, key, expected", [
    ({"method": "sft", "dataset": "nope"}, "methods.dpo.init_from.dataset", "unknown dataset 'nope' (known: chat, beavertails)"),
    ({"method": "sft", "preference": "bad name"}, "methods.dpo.init_from.preference", "preference 'bad name' must start"),
    ({"method": "sft", "seed": -1}, "methods.dpo.init_from.seed", "must be in [0, 4294967296)"),
    ({"method": "sft", "model": "m"}, "methods.dpo.init_from.model", ""),
    ({"dataset": "chat"}, "methods.dpo.init_from.method", "init_from needs 'method' (one of: sft, dpo) or 'adapter'"),
    ({"method": "sft", "adapter": "org/a"}, "methods.dpo.init_from.adapter", "not both"),
    ({"adapter": "org/a", "dataset": "chat"}, "methods.dpo.init_from.dataset", "an adapter has no run"),
    ({"method": "sft", "revision": "v1"}, "methods.dpo.init_from.revision", "only an init_from.adapter"),
    ({"adapter": "org/a", "revision": "bad rev"}, "methods.dpo.init_from.revision", "is not a revision"),
    ({"adapter": "./missing-adapter"}, "methods.dpo.init_from.adapter", "not found"),
    ({"adapter": "./not-an-adapter"}, "methods.dpo.init_from.adapter", "has no adapter_config.json"),
    ({"adapter": "./a-file"}, "methods.dpo.init_from.adapter", "is a file, not a PEFT adapter folder"),
])
def test_bad_init_from_is_one_line_naming_file_and_key(tmp_path, capsys, init, key, expected):
    (tmp_path / "not-an-adapter").mkdir()
    (tmp_path / "a-file").write_text("x")

    def edit(s):
        s["methods"]["dpo"]["init_from"] = init
    spec = _write(tmp_path, edit)
    out = tmp_path / "out"
    assert main(["submit", str(spec), "--executor", "local", "-o", str(out), "--skip-preflight"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all("Traceback" not in line for line in err)
    line = next((e for e in err if f"{key}:" in e), None)
    assert line is not None and f"{spec}" in line and expected in line, err
    assert not out.exists()


def test_continue_from_an_adapter_of_another_lora_shape_is_refused(tmp_path, capsys):
    folder = _adapter(tmp_path, r=16)

    def edit(s):
        s["methods"] = {"dpo": {**s["methods"]["dpo"], "init_from": {"adapter": str(folder)}}}
        s["grid"].update(method=["dpo"], dataset=["beavertails"], preference=["harmless"])
        del s["zip"]
    spec = _write(tmp_path, edit)
    assert main(["plan", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{spec}" in err[0] and "methods.dpo.lora: init_mode continue trains init_from.adapter" in err[0]
    assert "(r 16, alpha 16" in err[0] and not (tmp_path / "out").exists()

    def merge(s):
        edit(s)
        s["methods"]["dpo"]["init_mode"] = "merge"  # a fresh adapter of the method's own shape
    assert load_plan(_write(tmp_path, merge, "merge.yaml"), output_dir=tmp_path / "out2").jobs


def test_the_job_starts_from_the_adapter_its_config_names(tmp_path):
    """jobs/train/chain.py start_adapter: the upstream job's adapter, or init.adapter (a folder
    without adapter_config.json is a one-line job failure, not a PEFT traceback)."""
    from types import SimpleNamespace

    from jobs.errors import JobFailure
    from jobs.train.chain import start_adapter

    folder = _adapter(tmp_path)
    job = tmp_path / "jobs" / "abc"
    cfg = lambda **init: SimpleNamespace(init=SimpleNamespace(**{"job": None, "adapter": None, "revision": None, **init}))  # noqa: E731
    assert start_adapter(job, cfg(adapter=str(folder))) == (str(folder), None)
    assert start_adapter(job, cfg(adapter="org/sft-adapter", revision="v1")) == ("org/sft-adapter", "v1")
    with pytest.raises(JobFailure, match="init.adapter .*: no adapter_config.json there"):
        start_adapter(job, cfg(adapter=str(tmp_path / "jobs")))
    up = tmp_path / "jobs" / "up1"
    (up / "adapter").mkdir(parents=True)
    with pytest.raises(JobFailure, match="the upstream train job has not finished"):
        start_adapter(job, cfg(job="up1"))
    (up / "DONE").write_text("")
    (up / "adapter" / "adapter_config.json").write_text("{}")
    assert start_adapter(job, cfg(job="up1")) == (str(up / "adapter"), None)
