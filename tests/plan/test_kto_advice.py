"""Issue 25 item 15: `plan` warns when a KTO profile leaves TRL's recommendations (TRL 1.16
docs/source/kto_trainer.md: per-step batch >= 4, effective batch 16-128; (desirable_weight x
positives) : (undesirable_weight x negatives) in [1:1, 4:3], here with one of each per pair)."""

from __future__ import annotations

import pytest

from alignkit.cli.main import main
from alignkit.plugins.methods import method
from tests.fixtures.spec_fixtures import base, write

KTO = {"type": "kto", "learning_rate": 5.0e-6, "batch_size": 32, "per_device_batch_size": 4,
       "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj"]}}


@pytest.mark.parametrize("change, warning", [
    ({}, None),
    ({"per_device_batch_size": 2, "batch_size": 16}, "methods.kto.per_device_batch_size: 2 is below TRL's KTO "
                                                     "recommendation of at least 4 per step"),
    ({"batch_size": 8}, "methods.kto.batch_size: 8 is outside TRL's KTO recommendation of an effective batch of 16-128"),
    ({"batch_size": 256}, "methods.kto.batch_size: 256 is outside"),
    ({"desirable_weight": 1.5}, "methods.kto.desirable_weight/undesirable_weight: 1.5/1 = 1.5 is outside TRL's KTO rule"),
    ({"undesirable_weight": 1.2}, "methods.kto.desirable_weight/undesirable_weight: 1/1.2 = 0.833 is outside"),
    ({"desirable_weight": 1.3}, None),  # 1.3 is within [1, 4/3]
])
def test_kto_warnings_at_plan(tmp_path, capsys, change, warning):
    d = base()
    d["methods"]["kto"] = dict(KTO, **change)
    d["grid"]["method"] = ["sft", "dpo", "kto"]
    path = write(tmp_path, d)
    assert main(["plan", str(path)]) == 0  # a warning, never a refusal
    lines = [x for x in capsys.readouterr().err.splitlines() if "methods.kto." in x]
    if warning is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith(f"alignkit plan: warning: {path}: ") and warning in lines[0]


def test_other_methods_have_no_advice():
    assert method("dpo").advice({"batch_size": 2, "per_device_batch_size": 1}) == []
