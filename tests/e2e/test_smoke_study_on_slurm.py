"""The smoke study end to end on the real dev cluster, as a user meets it:
`alignkit submit` -> `alignkit status` -> `alignkit collect`, with one training job preempted by
the high-priority partition mid-run (it resumes from its checkpoint) and one training job that
fails on bad data (its eval and judge end BLOCKED, the rest of the study completes); after the
data is fixed, a second `submit` completes the study without redoing finished jobs. Assertions
are on the collected table and the files the jobs wrote, not on logs.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alignkit.plan.datacheck import SAMPLE_ROWS

from alignkit.cli.main import main as cli
from alignkit.status.state import refresh
from alignkit.submit.sweepdir import SweepDir
from tests.slurm.conftest import wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ENDED = {"COMPLETED", "FAILED", "BLOCKED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


def _spec(tmp: Path) -> Path:
    """sweeps/smoke.yaml with absolute asset paths, one seed (the second seed doubles the runs and
    the suite's longest test without exercising anything new on the scheduler), longer training (so
    a run can be caught mid-way), and one extra run on a copy of the data that we break, then fix."""
    spec = yaml.safe_load((ROOT / "sweeps/smoke.yaml").read_text())

    def fix(path: str) -> str:
        return str((ROOT / "sweeps" / path).resolve())

    spec["models"]["tiny-llama"]["source"] = fix(spec["models"]["tiny-llama"]["source"])
    for ds in spec["datasets"].values():
        ds["source"] = fix(ds["source"])
    for b in spec["evals"]["benchmarks"].values():
        for key in ("source", "include_path", "classifier"):
            if b.get(key):
                b[key] = fix(b[key])
    spec["evals"]["judges"]["tiny"]["source"] = fix(spec["evals"]["judges"]["tiny"]["source"])
    broken = tmp / "broken-data"
    shutil.copytree(ROOT / "assets/smoke-data/pku-saferlhf", broken)
    spec["datasets"]["broken"] = {"format": "beavertails", "source": str(broken), "split": "train"}
    spec["grid"]["seed"] = [0]
    spec["include"] = [{"dataset": "broken", "preference": "helpful", "method": "sft", "peft": "lora", "seed": 0}]
    spec["training"]["max_steps"] = 40
    spec["training"]["save_steps"] = 10
    spec["evals"]["checkpoints"] = [10, "final"]
    spec["output_dir"] = str(tmp / "sweep")
    path = tmp / "smoke-e2e.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _break(data: Path) -> str:
    train = data / "data" / "train.jsonl"
    good = train.read_text()
    lines = good.splitlines()
    # a row past the sample plan checks (alignkit/plan/datacheck.py SAMPLE_ROWS): only the job finds it
    assert len(lines) > SAMPLE_ROWS + 1
    row = json.loads(lines[-1])
    del row["prompt"]
    lines[-1] = json.dumps(row)
    train.write_text("\n".join(lines) + "\n")
    return good


def _settle(sd: SweepDir, timeout: float):
    return wait_for(lambda: (st := refresh(sd)) and all(j.state in ENDED for j in st.jobs) and st,
                    timeout, "the study to end", every=3)


def _preempt_one_training_run(sd: SweepDir) -> str:
    """Wait until a training run is past its first checkpoint but not done, then start a job on
    the high-priority partition that needs every CPU of the node: SLURM preempts (requeues) it."""
    manifest = {j["id"]: j for j in sd.load_manifest()["jobs"]}

    def running_train():
        for job_id, job in manifest.items():
            if job["stage"] != "train" or (sd.job(job_id) / "DONE").exists():
                continue
            try:
                step = json.loads((sd.job(job_id) / "progress.json").read_text())["step"]
            except (OSError, ValueError, KeyError):
                continue
            if 10 <= step <= 30 and (sd.job(job_id) / "checkpoints" / "step-10").exists():
                return job_id
        return None

    victim = wait_for(running_train, 600, "a training run between steps 10 and 30", every=0.2)
    cpus = subprocess.check_output(["sinfo", "-h", "-N", "-o", "%c"], text=True).split()[0]
    subprocess.check_call(["sbatch", "-p", "urgent", "-c", cpus, "-o", "/dev/null", "--job-name", "ak-e2e-urgent",
                           "--wrap", "sleep 3"], stdout=subprocess.DEVNULL)
    return victim


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_smoke_study_preempted_failed_resubmitted_collected(cluster, sweep, capsys):
    tmp_path = sweep  # outside pytest's tmp dirs, which other pytest runs prune while jobs still write
    spec = _spec(tmp_path)
    good = _break(tmp_path / "broken-data")
    sweep = tmp_path / "sweep"

    assert cli(["submit", str(spec), "--profile", "dev"]) == 0
    sd = SweepDir.of(sweep)
    victim = _preempt_one_training_run(sd)
    st = _settle(sd, 1500)
    by_id = {j.id: j for j in st.jobs}
    names = {j.id: j.name for j in st.jobs}

    # the preempted run was requeued and resumed from a checkpoint (it did not start over)
    pre = by_id[victim]
    assert pre.state == "COMPLETED", (pre.name, pre.state, pre.reason)
    metrics = json.loads((sd.job(victim) / "train_metrics.json").read_text())
    assert metrics["attempts"] >= 2, metrics["attempts"]
    assert metrics.get("resumed_from_step", 0) >= 10
    steps = [p["step"] for p in metrics["loss_curve"]]
    assert steps == sorted(set(steps)) and steps[-1] == 40  # one loss curve, no step logged twice

    # the broken run failed with a reason naming the file, row and field; its eval/judge are blocked
    broken = next(j for j in st.jobs if j.stage == "train" and "/broken/" in j.name)
    assert broken.state == "FAILED" and f"row {len(good.splitlines())}" in broken.reason and "prompt" in broken.reason, broken.reason
    downstream = [j for j in st.jobs if j.name.startswith(broken.name + "/")]
    assert {j.state for j in downstream} == {"BLOCKED"} and len(downstream) == 2
    others = [j for j in st.jobs if j.id != broken.id and j not in downstream]
    assert {j.state for j in others} == {"COMPLETED"}, [(j.name, j.state, j.reason) for j in others
                                                      if j.state != "COMPLETED"]

    # status through the CLI agrees
    capsys.readouterr()
    assert cli(["status", str(sweep), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["train"] == {"COMPLETED": 8, "FAILED": 1}

    # fix the data, submit again: only the failed run and its two blocked jobs go again
    (tmp_path / "broken-data" / "data" / "train.jsonl").write_text(good)
    done_before = {j.id: (sd.job(j.id) / "DONE").stat().st_mtime for j in others}
    capsys.readouterr()
    assert cli(["submit", str(spec), "--profile", "dev"]) == 0
    out = capsys.readouterr().out
    assert "queued 3 job(s)" in out, out
    st = _settle(sd, 900)
    assert {j.state for j in st.jobs} == {"COMPLETED"}, [(j.name, j.state, j.reason) for j in st.jobs
                                                         if j.state != "COMPLETED"]
    for job_id, mtime in done_before.items():  # nothing finished was redone
        assert (sd.job(job_id) / "DONE").stat().st_mtime == mtime, names[job_id]

    # collect: the tidy table has every run, checkpoint and benchmark, merges included
    assert cli(["collect", str(sweep), "--format", "csv,md"]) == 0
    rows = _rows(sweep / "collect")
    evals = [j for j in st.jobs if j.stage == "eval"]
    benchmarks = {"mmlu", "bbh", "realtoxicity", "red_instruct", "alpaca_eval"}
    got = {(r["job_id"], r["checkpoint"], r["benchmark"]) for r in rows if r["value"] not in ("", None)}
    manifest = {j["id"]: j for j in sd.load_manifest()["jobs"]}
    for ev in evals:
        trained = manifest[ev.id]["config"]["target"]["kind"] == "adapter"  # merged and base: final only
        for checkpoint in (["10", "final"] if trained else ["final"]):
            for bench in benchmarks - {"red_instruct", "alpaca_eval"}:  # judged ones come from the judge stage
                assert (ev.id, checkpoint, bench) in got, (ev.name, checkpoint, bench)
    judged = {(r["target_job"], r["benchmark"]) for r in rows if r["stage"] == "judge" and r["value"]}
    assert len(judged) == 2 * len(evals)
    assert {r["merge"] for r in rows if r["merge"]} == {"slerp", "dare"}
    assert {r["state"] for r in rows} == {"done"}
    original = [r for r in rows if r["preference"] == "original" and r["benchmark"] == "mmlu" and r["value"]]
    assert len(original) == 1 and original[0]["target_kind"] == "base"  # the untrained model, evaluated once
    fixed = [r for r in rows if r["dataset"] == "broken" and r["benchmark"] == "mmlu" and r["value"]]
    assert len(fixed) == 2, "the fixed run's evals (step 10 and final) are in the table"
