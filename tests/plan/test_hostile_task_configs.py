"""An lm-eval include_path whose task YAML names Python (`!function`): plan, submit's preflight and
prefetch read the task configs without importing it (only the eval job runs task code).

The hostile module writes a marker file and exits the interpreter when imported."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from alignkit.plan.preflight import lm_eval_datasets, study_assets, study_problems

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "assets" / "smoke-eval" / "tasks"

TASK = """task: hostile_task
custom_dataset: !function hostile.load
process_docs: !function hostile.process_docs
dataset_kwargs:
  files: {test: data/mmlu_test.jsonl}
test_split: test
output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]
"""
GROUP = """group: hostile_group
task: [hostile_task, {task: hostile_inline, class: !function hostile.Task}]
"""


def _tasks(tmp_path: Path) -> tuple[Path, Path]:
    tasks = tmp_path / "tasks"
    shutil.copytree(TASKS, tasks)
    marker = tmp_path / "IMPORTED"
    (tasks / "hostile.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(7)\n")
    (tasks / "hostile_task.yaml").write_text(TASK)
    (tasks / "hostile_group.yaml").write_text(GROUP)
    return tasks, marker


def _job(tasks: Path, task: str) -> dict:
    return {"config": {"stage": "eval", "benchmarks": {"h": {"type": "lm_eval", "task": task,
                                                             "include_path": str(tasks)}}}}


def test_task_configs_are_read_without_running_their_code(tmp_path):
    tasks, marker = _tasks(tmp_path)
    leaves, unknown = lm_eval_datasets([_job(tasks, "hostile_task"), _job(tasks, "hostile_group")])
    assert unknown == []
    assert {leaf["task"] for leaf in leaves} == {"hostile_task", "hostile_group::hostile_inline"}
    assert all(leaf["custom_dataset"] for leaf in leaves if leaf["task"] == "hostile_task")
    assert not marker.exists() and "hostile" not in sys.modules  # the task folder's module, never imported


def test_submits_preflight_runs_no_task_code(tmp_path):
    tasks, marker = _tasks(tmp_path)
    study_problems(study_assets([_job(tasks, "hostile_task"), _job(tasks, "hostile_group")]))
    assert not marker.exists()


def test_the_shipped_smoke_tasks_still_resolve(tmp_path):
    leaves, unknown = lm_eval_datasets([_job(TASKS, "smoke_mmlu"), _job(TASKS, "smoke_bbh")])
    assert unknown == [] and {leaf["task"] for leaf in leaves} == {"smoke_mmlu", "smoke_bbh"}
    assert all(leaf["custom_dataset"] for leaf in leaves)
