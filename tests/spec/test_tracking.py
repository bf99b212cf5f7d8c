"""Experiment trackers (issue 15 item 8): the spec's `tracking` section, its absence from job ids,
and what a tiny training run writes for each backend, read back with the tracker's own reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from alignkit.plan.compiler import load_plan
from alignkit.contract.errors import SpecError
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.train_configs import ROOT, train_config, typed
from tests.fixtures.written import written

# ---- spec and compiler (fast) ---------------------------------------------------------------------

BAD = [
    ({"backend": "neptune"}, "tracking.backend: unknown value 'neptune' (allowed: tensorboard, wandb, mlflow)"),
    ({"backend": "wandb", "projekt": "p"}, "tracking.projekt: unknown key 'projekt'; did you mean 'project'?"),
    ({"backend": "mlflow", "entity": "team"}, "tracking.entity: entity is a W&B setting"),
    ({"backend": "wandb", "tracking_uri": "http://h:5000"}, "tracking.tracking_uri: tracking_uri is an MLflow setting"),
    ({"backend": "mlflow", "tracking_uri": "h:5000; rm -rf /"}, "is not an MLflow tracking URI"),
    ({"backend": "wandb", "project": "../up"}, "tracking.project: project '../up' must start with a letter"),
    ({"backend": "wandb", "tags": ["ok", "x" * 65]}, "tracking.tags[1]: tag"),
    ({"backend": "tensorboard", "tags": ["a\nb"]}, "tracking.tags[0]: control character"),
]


@pytest.mark.parametrize("section,expected", BAD, ids=[b[1].split(":")[0] + str(i) for i, b in enumerate(BAD)])
def test_a_bad_tracking_section_is_one_line_naming_the_key(tmp_path, section, expected):
    d = base()
    d["tracking"] = section
    path = write(tmp_path, d)
    with pytest.raises(SpecError) as info:
        load_plan(path)
    assert any(expected in p for p in info.value.problems), info.value.problems
    assert all("\n" not in p and p.startswith(str(path)) for p in info.value.problems)


def test_cli_refuses_a_bad_tracking_section_with_exit_2(tmp_path):
    d = base()
    d["tracking"] = {"backend": "neptune"}
    proc = subprocess.run([sys.executable, "-m", "alignkit", "plan", str(write(tmp_path, d))],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "KEY": "k"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("alignkit plan: error: ") and "tracking.backend" in proc.stderr


def test_tracking_reaches_train_configs_and_leaves_every_job_id_unchanged(tmp_path):
    without = load_plan(write(tmp_path, base(), "a.yaml"))
    d = base()
    d["tracking"] = {"backend": "mlflow", "project": "study", "tracking_uri": "http://127.0.0.1:5000",
                     "tags": ["pilot"]}
    with_mlflow = load_plan(write(tmp_path, d, "b.yaml"))
    d["tracking"] = {"backend": "wandb", "entity": "lab"}
    with_wandb = load_plan(write(tmp_path, d, "c.yaml"))
    ids = [[(j.id, j.name, j.depends_on) for j in p.jobs] for p in (without, with_mlflow, with_wandb)]
    assert ids[0] == ids[1] == ids[2]
    for job in with_mlflow.jobs:
        if job.stage == "train":
            assert written(job)["tracking"] == {"backend": "mlflow", "project": "study", "entity": None,
                                              "tracking_uri": "http://127.0.0.1:5000", "tags": ["pilot"],
                                              "sweep": "unit", "run_name": job.name}
        else:  # only training reports to a tracker
            assert "tracking" not in written(job)
    assert all("tracking" not in written(j) for j in without.jobs)


def test_no_tracking_section_reports_to_none(tmp_path):
    from jobs import tracking

    t = tracking.setup(tmp_path, typed(train_config("sft")), is_main=True)
    assert t.args == {"report_to": "none"} and t.callbacks == []


def test_sync_without_offline_runs_says_so_and_outside_a_sweep_is_refused(tmp_path):
    def sync(*args):
        return subprocess.run([sys.executable, "-m", "alignkit", "sync", *args], capture_output=True, text=True,
                              cwd=ROOT)

    (tmp_path / "study" / "jobs" / "0123456789ab").mkdir(parents=True)
    (tmp_path / "study" / "manifest.json").write_text("{}")
    out = sync(str(tmp_path / "study"))
    assert out.returncode == 0 and "no offline W&B runs to sync" in out.stdout, out.stderr
    out = sync(str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("alignkit sync: error: ") and "not a sweep directory" in out.stderr


def test_a_backend_whose_package_is_missing_fails_the_job_with_one_line(tmp_path, monkeypatch):
    from jobs import tracking
    from jobs.errors import JobFailure

    monkeypatch.setitem(tracking.REGISTRY, "wandb", tracking.Backend("wandb", "wandb_not_installed_here", None))
    config = {**train_config("sft"), "tracking": {"backend": "wandb", "run_name": "r", "sweep": "s"}}
    with pytest.raises(JobFailure, match=r"^tracking.backend: wandb needs the wandb_not_installed_here package"):
        tracking.setup(tmp_path, typed(config), is_main=True)


# ---- a tiny training run per backend (slow) ---------------------------------------------------------

@pytest.fixture
def restore_process_state():
    # run() and the trackers export variables (RANK, TENSORBOARD_LOGGING_DIR, MLFLOW_*, WANDB_*) as a
    # job process should; tests share one interpreter, so put them back.
    import torch

    env, threads = dict(os.environ), torch.get_num_threads()
    yield
    os.environ.clear()
    os.environ.update(env)
    torch.set_num_threads(threads)


def _train(tmp_path: Path, tracking: dict) -> tuple[Path, dict, dict]:
    """A 2-step SFT run in the contract's layout <sweep>/jobs/<id>; returns (job dir, config, metrics)."""
    from jobs.train import stage as train

    config = train_config("sft", max_steps=2, save_steps=2, logging_steps=1)
    config["tracking"] = {"backend": "tensorboard", "project": None, "entity": None, "tracking_uri": None,
                          "tags": ["pilot"], "sweep": "tiny", "run_name": "tiny-llama/beavertails/harmless/sft/lora/s0",
                          **tracking}
    job = tmp_path / "tiny" / "jobs" / "0123456789ab"
    job.mkdir(parents=True)
    train.run(job, typed(config), threading.Event())
    return job, config, json.loads((job / "train_metrics.json").read_text())


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_loss_and_the_labels(tmp_path, restore_process_state):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    job, config, m = _train(tmp_path, {"backend": "tensorboard"})
    events = EventAccumulator(str(job / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([p["loss"] for p in m["loss_curve"]], rel=1e-6)
    texts = {tag: events.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]}
    assert texts["alignkit/run_name/text_summary"] == config["tracking"]["run_name"]
    assert "method:sft" in texts["alignkit/tags/text_summary"] and "pilot" in texts["alignkit/tags/text_summary"]
    assert '"learning_rate": 0.002' in texts["alignkit/config/text_summary"]


@pytest.mark.slow
def test_mlflow_file_store_holds_params_metrics_and_tags(tmp_path, restore_process_state):
    import mlflow

    job, config, m = _train(tmp_path, {"backend": "mlflow", "project": "tiny-study"})
    store = tmp_path / "tiny" / "mlruns"
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = mlflow.MlflowClient(tracking_uri=store.as_uri())
    exps = [e for e in client.search_experiments() if e.name == "tiny-study"]
    assert len(exps) == 1
    (run,) = client.search_runs([exps[0].experiment_id])
    assert run.info.run_name == config["tracking"]["run_name"] and run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["axis.method"] == "sft" and tags["axis.peft"] == "lora" and tags["alignkit.job_id"] == job.name
    assert tags["config.method.learning_rate"] == "0.002" and tags["tag.pilot"] == "true"
    assert float(run.data.params["learning_rate"]) == 0.002  # TrainingArguments, logged by MLflowCallback
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [h.step for h in history] == [1, 2]
    assert [h.value for h in history] == pytest.approx([p["loss"] for p in m["loss_curve"]], rel=1e-6)


@pytest.mark.slow
def test_wandb_offline_run_folder_names_the_run_and_its_tags(tmp_path, restore_process_state):
    from alignkit.cli.main import main

    job, config, _ = _train(tmp_path, {"backend": "wandb", "project": "tiny-study"})
    (run_dir,) = (job / "wandb").glob("offline-run-*")
    (log,) = run_dir.glob("run-*.wandb")  # W&B's transaction log: protobuf records, strings verbatim
    data = log.read_bytes()
    for text in (config["tracking"]["run_name"], "tiny-study", "method:sft", "seed:0", "pilot", "learning_rate"):
        assert text.encode() in data, text
    assert not any(k.startswith("WANDB_API_KEY") for k in os.environ)  # offline: no key needed
    # `alignkit sync --dry-run` prints the wandb sync line for exactly this folder
    (tmp_path / "tiny" / "manifest.json").write_text("{}")
    out = subprocess.run([sys.executable, "-m", "alignkit", "sync", str(tmp_path / "tiny"), "--dry-run"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1:] == ["sync", str(run_dir)]
    assert main(["sync", str(tmp_path / "tiny"), "--dry-run"]) == 0
