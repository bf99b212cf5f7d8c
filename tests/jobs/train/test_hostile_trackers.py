"""Tracker stores: a documented `tracking_uri: file://...` works in the job (it failed every training
job with an MlflowException), a store inside the code checkout is refused at plan in one located line
as output_dir is, and a named store outside the sweep (a team's server, a database, a folder) stays
the user's choice."""

from __future__ import annotations

import os

import pytest

from alignkit.cli.main import main
from alignkit.contract.sections import tracking_store_path
from alignkit.spec.paths import CHECKOUT
from tests.fixtures import spec_fixtures as sf


def _plan(tmp_path, capsys, uri: str) -> tuple[int, list[str]]:
    s = sf.base()
    s["tracking"] = {"backend": "mlflow", "tracking_uri": uri}
    path = sf.write(tmp_path, s)
    code = main(["plan", str(path), "-o", str(tmp_path / "out")])
    return code, [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]


@pytest.mark.parametrize("uri,where", [
    (f"file://{CHECKOUT}/sweeps/mlruns", "inside this checkout's sweeps/"),
    (f"file://{CHECKOUT}/alignkit", "inside this checkout's alignkit/"),
    (f"file:{CHECKOUT}", "which holds this checkout"),
    (f"sqlite:///{CHECKOUT}/jobs/mlflow.db", "inside this checkout's jobs/"),
])
def test_a_store_inside_the_checkout_is_refused_like_output_dir(tmp_path, capsys, uri, where):
    code, err = _plan(tmp_path, capsys, uri)
    assert code == 2 and len(err) == 1, err
    assert "spec.yaml:" in err[0] and "tracking.tracking_uri:" in err[0] and where in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("uri", ["http://mlflow.team.example:5000", "postgresql://u@db.example/mlflow",
                                 "file:///tmp/team-mlruns", "sqlite:////tmp/team.db"])
def test_a_named_store_outside_the_checkout_stays_allowed(tmp_path, capsys, uri):
    code, err = _plan(tmp_path, capsys, uri)
    assert code == 0, err


def test_store_paths():
    assert tracking_store_path("file:///a/b%20c") == "/a/b c" and tracking_store_path("file:/a") == "/a"
    assert tracking_store_path("sqlite:///rel.db") == "rel.db" and tracking_store_path("sqlite:////abs.db") == "/abs.db"
    assert tracking_store_path("http://h:5000") is None


@pytest.fixture()
def saved_env():
    env = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(env)


def test_a_named_file_store_works_in_the_job(tmp_path, saved_env):
    mlflow = pytest.importorskip("mlflow")
    from jobs.tracking import Run, _mlflow

    store = tmp_path / "team-store"
    os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
    job = tmp_path / "sweep" / "jobs" / "0123456789ab"
    job.mkdir(parents=True)
    run = Run(job_dir=job, name="m/d/p/sft/lora/s0", sweep="s", project="team", tags=(), config={"axes": {}},
              settings={"tracking_uri": store.as_uri()})
    assert _mlflow(run) == []
    assert os.environ["MLFLOW_TRACKING_URI"] == store.as_uri() and os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
    client = mlflow.MlflowClient(tracking_uri=store.as_uri())
    exp = client.get_experiment_by_name("team")
    assert exp is not None
    r = client.create_run(exp.experiment_id)  # what MLflowCallback does next: no MlflowException
    client.log_metric(r.info.run_id, "train/loss", 1.0)
    assert not (tmp_path / "sweep" / "mlruns").exists()  # the named store, not the default one
