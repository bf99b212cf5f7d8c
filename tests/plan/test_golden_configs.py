"""The typed contract's golden files (issue 13 item 6): the config.json of the first job of each
stage of sweeps/smoke.yaml, byte for byte as `submit` writes it, and every config.json of the
smoke study loads through alignkit.contract.load.

The checkout's absolute path (local sources are made absolute) is written as <ROOT> in the golden
files, and the job ids a config names (hashes over those paths) as <job NAME>. A change here is a change of every smoke job's id: regenerate only for a result-affecting
fix, and say so (`python -m tests.plan.test_golden_configs` rewrites them)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from alignkit import contract
from alignkit.plan.compiler import load_plan
from alignkit.contract.merge import MergeConfig
from alignkit.contract.train import TrainConfig
from alignkit.contract.fsio import atomic_write_json
from alignkit.contract.serial import to_json, write_config

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden")
STAGES = ("train", "eval", "merge", "judge")


def _written(tmp: Path, config: Any, names: dict[str, str]) -> str:
    """config.json's text as alignkit.submit.launch writes it, with the checkout's path as <ROOT> and each
    job id it names as <job NAME> (ids hash the absolute paths, so they differ between checkouts)."""
    path = tmp / "config.json"
    write_config(path, config)
    text = path.read_text().replace(str(ROOT), "<ROOT>")
    for job_id, name in names.items():
        text = text.replace(f'"{job_id}"', f'"<job {name}>"')
    return text


def _plan(tmp: Path):
    return load_plan(ROOT / "sweeps" / "smoke.yaml", output_dir=tmp / "runs")


@pytest.mark.parametrize("stage", STAGES)
def test_smoke_config_json_matches_its_golden_file(tmp_path, stage):
    jobs = _plan(tmp_path).jobs
    job = next(j for j in jobs if j.stage == stage)
    got = _written(tmp_path, job.config, {j.id: j.name for j in jobs})
    want = (GOLDEN / f"config-{stage}.json").read_text()
    assert got == want, f"{stage} config.json of {job.name} changed (id {job.id})"


def test_every_smoke_config_json_loads_through_the_contract(tmp_path):
    plan = _plan(tmp_path)
    typed = {stage for stage in STAGES if importlib.util.find_spec(f"alignkit.contract.{stage}") is not None}
    assert {"train", "merge"} <= typed  # eval and judge: alignkit/contract/eval.py, judge.py once they exist
    loaded: dict[str, int] = {}
    for job in plan.jobs:
        if job.stage not in typed:
            continue
        d = tmp_path / "jobs" / job.id
        d.mkdir(parents=True)
        write_config(d / "config.json", job.config)
        config = contract.load(d)
        assert type(config) is contract.config_class(job.stage)
        assert config == job.config, f"{job.name}: config.json does not read back as the compiled config"
        loaded[job.stage] = loaded.get(job.stage, 0) + 1
    assert loaded["train"] == 16 and loaded["merge"] == 16  # 8 groups x (slerp, dare)
    if typed == set(STAGES):
        assert sum(loaded.values()) == len(plan.jobs)
    assert isinstance(contract.load(tmp_path / "jobs" / plan.jobs[0].id / "config.json"), TrainConfig)
    merge = next(j for j in plan.jobs if j.stage == "merge")
    m = contract.load(tmp_path / "jobs" / merge.id)
    assert isinstance(m, MergeConfig) and m.inputs == merge.config.inputs


def test_a_bad_config_json_is_one_line_naming_the_file_and_key(tmp_path):
    plan = _plan(tmp_path)
    job = next(j for j in plan.jobs if j.stage == "train" and j.config.method.type == "dpo")
    d = tmp_path / "job"
    d.mkdir()
    bad = to_json(job.config)
    bad["method"]["betta"] = 0.2
    atomic_write_json(d / "config.json", bad)
    with pytest.raises(contract.ContractError) as err:
        contract.load(d)
    assert str(err.value) == f"{d / 'config.json'}: method.betta: unknown key 'betta'; did you mean 'beta'?"
    bad = to_json(job.config)
    bad["training"]["max_steps"] = "700"
    atomic_write_json(d / "config.json", bad)
    with pytest.raises(contract.ContractError, match=r"config.json: training.max_steps: expected an integer, got str '700'"):
        contract.load(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(contract.ContractError, match=r"config.json: not JSON"):
        contract.load(d)


def test_the_job_entry_refuses_a_bad_config_with_exit_2_and_error_json(tmp_path):
    import subprocess

    plan = _plan(tmp_path)
    job = next(j for j in plan.jobs if j.stage == "train")
    d = tmp_path / "job"
    d.mkdir()
    atomic_write_json(d / "config.json", dict(to_json(job.config), seed="zero"))
    proc = subprocess.run([sys.executable, "-m", "jobs.entry", str(d)], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == f"job failed: {d / 'config.json'}: seed: expected an integer, got str 'zero'"
    assert json.loads((d / "error.json").read_text())["type"] == "ContractError"
    assert not (d / "DONE").exists()


if __name__ == "__main__":  # regenerate the golden files (see the module docstring)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        jobs = _plan(Path(tmp)).jobs
        for stage in STAGES:
            job = next(j for j in jobs if j.stage == stage)
            (GOLDEN / f"config-{stage}.json").write_text(_written(Path(tmp), job.config, {j.id: j.name for j in jobs}))
            print(f"wrote golden/config-{stage}.json ({job.name}, id {job.id})")
