"""Jobs take typed configs only (issue 24 item 2): config.json's dict becomes the stage's frozen
class in one place, the contract's loader (jobs/entry.py, jobs/preview.py's main), and every job
function past it refuses a plain dict instead of parsing it a second time.

Each stage's `run` is handed its golden config.json (tests/unit/golden/, a valid config) as the
dict it is on disk: it must raise TypeError before doing anything, and the typed config of the
same file must be what the loader gives. A static check keeps new dict entry points out of jobs/.
"""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path

import pytest

from alignkit import contract
from alignkit.contract.stages import STAGES
from jobs.entry import stage_module

ROOT = Path(__file__).resolve().parents[2]
# Where a dict is right: the boundary that parses config.json (and `alignkit preview`'s request) into
# the typed config, and the judge client, whose block is `dict[str, Any]` in the contract itself
# (alignkit.plugins.benchmarks.config_class: BenchmarkConfig.judge), not yet a frozen class.
DICT_ALLOWED = {"jobs/entry.py", "jobs/judge/judges.py"}
GOLDEN = Path(__file__).parent / "golden"


def _golden(stage: str) -> dict:
    return json.loads((GOLDEN / f"config-{stage}.json").read_text().replace("<ROOT>", str(ROOT)))


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_refuses_a_dict_config(stage, tmp_path):
    import importlib

    run = importlib.import_module(stage_module(stage)).run
    raw = _golden(stage)
    assert type(contract.parse(raw, "golden")).__name__ == STAGES[stage].config_class  # a valid config ...
    with pytest.raises(TypeError, match=rf"takes a typed {STAGES[stage].config_class} .*not a dict"):
        run(tmp_path, raw, threading.Event())  # ... refused as a dict
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_job_helpers_refuse_dict_sections():
    from jobs import base_weights, tracking
    from jobs.data import load_with_validation
    from jobs.data.templates import apply_template
    from jobs.eval import stage as evaluate
    from jobs.preview import eval_preview, train_preview
    from jobs.train import stage as train

    train_cfg, eval_cfg = _golden("train"), _golden("eval")
    calls = [
        lambda: train.resolve(train_cfg, cuda=False, world_size=1),
        lambda: train.load_examples(train_cfg),
        lambda: train.load_tokenizer(train_cfg["model"]),
        lambda: evaluate.load_tokenizer(eval_cfg["model"], "/nowhere"),
        lambda: load_with_validation(train_cfg["dataset"], ["harmless"], 0),
        lambda: base_weights.of_model(train_cfg["model"]),
        lambda: base_weights.of_train_config(train_cfg),
        lambda: apply_template(object(), train_cfg["model"]),
        lambda: tracking.setup(Path("/nowhere"), train_cfg, is_main=True),
        lambda: train_preview(train_cfg, 1),
        lambda: eval_preview(eval_cfg, 1, [], None),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="not a dict"):
            call()


def test_no_dict_entry_point_in_jobs():
    """No job function branches on a config being a dict (`isinstance(config, dict)`, a parameter
    typed `... | dict`): the way back from a typed config to parsing dicts in every job."""
    names = ("config", "cfg", "model", "model_cfg", "dataset", "benchmark", "raw")
    found = []
    for path in sorted((ROOT / "jobs").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if str(rel) in DICT_ALLOWED:
            continue
        for n in ast.walk(ast.parse(path.read_text())):
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "isinstance"
                    and len(n.args) == 2 and isinstance(n.args[0], ast.Name) and n.args[0].id in names
                    and isinstance(n.args[1], ast.Name) and n.args[1].id == "dict"):
                found.append(f"{rel}:{n.lineno}: {ast.unparse(n)}")
            if isinstance(n, ast.arg) and n.arg in names and n.annotation is not None:
                text = ast.unparse(n.annotation)
                if text == "dict" or "| dict" in text or "dict |" in text:
                    found.append(f"{rel}:{n.lineno}: {n.arg}: {text}")
    assert not found, "dict config entry points in jobs/:\n" + "\n".join(found)
