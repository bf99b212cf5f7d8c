"""The train job with training.num_train_epochs (issue 21 item 4): it counts the steps from the rows it
keeps after filtering, trains exactly those, and records them in train_metrics.json."""

from __future__ import annotations

import json
import math
import threading

import pytest

from tests.fixtures.train_configs import train_config, typed

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _every_test_restores_process_state(_restore_process_state):
    yield


@pytest.mark.parametrize("epochs", [1.0, 1.5])
def test_epochs_become_the_steps_of_the_kept_rows(tmp_path, epochs):
    from alignkit.contract.sections import steps_for_epochs
    from jobs.train import stage as train

    config = train_config("dpo", save_steps=1, num_train_epochs=epochs)
    del config["training"]["max_steps"]  # as the compiler writes an epochs run
    config["dataset"]["limit"] = 12
    train.run(tmp_path, typed(config), threading.Event())
    m = json.loads((tmp_path / "train_metrics.json").read_text())
    rows = m["train_rows"]
    assert 0 < rows <= 12 and m["num_train_epochs"] == epochs
    assert m["max_steps"] == m["steps"] == steps_for_epochs(rows, 8, epochs) == math.ceil(epochs * math.ceil(rows / 8))
    assert m["checkpoints"][-1] == m["steps"]


def test_a_fraction_of_training_is_saved_and_evaluated_at_its_step(tmp_path):
    """evals.checkpoints: [0.5] with num_train_epochs: the train job saves the step 0.5 of its counted
    max_steps comes to and records it; the eval job evaluates that adapter under the fraction."""
    from alignkit.contract.checkpoints import epoch_fraction_step
    from jobs.eval import stage as evaluate
    from jobs.train import stage as train
    from tests.fixtures.eval_fixtures import benchmarks, eval_job

    config = train_config("dpo", save_steps=100, num_train_epochs=3.0)
    del config["training"]["max_steps"]
    config["dataset"]["limit"] = 12
    config["save_fractions"] = [0.5]
    tr = tmp_path / "jobs" / "tr"
    tr.mkdir(parents=True)
    train.run(tr, typed(config), threading.Event())
    m = json.loads((tr / "train_metrics.json").read_text())
    step = epoch_fraction_step(0.5, m["max_steps"])
    assert m["fraction_steps"] == {"0.5": step} and 0 < step < m["max_steps"]
    assert m["checkpoints"] == [step, m["max_steps"]]  # save_steps 100 saves nothing else before the end

    bench = {"mmlu": benchmarks(safety=False)["mmlu"]}
    d, cfg = eval_job(tmp_path, "tr", [0.5, "final"], bench)
    evaluate.run(d, typed(cfg), threading.Event())
    out = json.loads((d / "eval.json").read_text())
    assert out["fraction_steps"] == {"0.5": step}
    assert set(out["checkpoints"]) == {"0.5", "final"}
    at = out["provenance"]["checkpoints"]
    assert at["0.5"]["path"] == str(tr / "checkpoints" / f"step-{step}") and at["final"]["path"] == str(tr / "adapter")
    assert at["0.5"]["adapter_sha256"] != at["final"]["adapter_sha256"]
    assert isinstance(out["checkpoints"]["0.5"]["mmlu"]["acc"], float)
