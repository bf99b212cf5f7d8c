"""The train job with training.num_train_epochs (issue 21 item 4): it counts the steps from the rows it
keeps after filtering, trains exactly those, and records them in train_metrics.json."""

from __future__ import annotations

import json
import math
import threading

import pytest

from tests.unit.train_configs import train_config

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
    train.run(tmp_path, config, threading.Event())
    m = json.loads((tmp_path / "train_metrics.json").read_text())
    rows = m["train_rows"]
    assert 0 < rows <= 12 and m["num_train_epochs"] == epochs
    assert m["max_steps"] == m["steps"] == steps_for_epochs(rows, 8, epochs) == math.ceil(epochs * math.ceil(rows / 8))
    assert m["checkpoints"][-1] == m["steps"]
