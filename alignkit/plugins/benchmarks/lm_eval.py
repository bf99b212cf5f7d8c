"""lm-evaluation-harness tasks (MMLU, BBH, local task YAMLs): scored in the eval job, no generations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from alignkit.plugins.benchmarks import BENCHMARKS
from alignkit.contract.benchmarks import Benchmark, CommonFields, RunContext


@dataclass(frozen=True)
class LmEvalFields(CommonFields):
    task: Optional[str] = None  # a task or group name
    include_path: Optional[str] = None  # a directory of local task YAMLs (TaskManager include_path)
    filter: Optional[str] = None  # which filter's score to report (default: 'none' or the only one)
    num_fewshot: Optional[int] = None
    metric: Optional[str] = None
    limit: Optional[int] = None  # examples per task (null = all)
    chat_template: Optional[bool] = None  # null = the model's lm_eval_chat_template


@BENCHMARKS.register("lm_eval")
class LmEval(Benchmark):
    fields = LmEvalFields
    path_fields = ("include_path",)
    revision_hint = " (lm-eval tasks name their datasets in their task YAMLs)"

    def resolve(self, cfg: dict, model: Any) -> dict:
        if cfg["chat_template"] is None:  # the model's choice; false unless it says otherwise
            cfg["chat_template"] = model.lm_eval_chat_template
        return cfg

    def check(self, b: Any, path: str, judges: dict, problems: Any) -> None:
        from alignkit.contract.schema import join

        super().check(b, path, judges, problems)
        if not b.task:
            problems.add(join(path, "task"), "an lm_eval benchmark needs 'task' (an lm-eval task or group name)")
        if not b.metric:
            problems.add(join(path, "metric"), "an lm_eval benchmark needs 'metric' (e.g. acc, exact_match)")

    def run(self, ctx: RunContext, name: str, cfg: Any) -> tuple[dict, None]:
        from alignkit.plugins.benchmarks import lm_eval_run

        return lm_eval_run.run_benchmark(ctx.model, ctx.tokenizer, name, cfg, device=ctx.device,
                                         task_managers=ctx.cache.setdefault("lm_eval_task_managers", {})), None


def task_datasets(task: str, include_path: str | None, cache: dict | None = None) -> list[dict]:
    """The datasets an lm-eval task or group reads (lm_eval_run.task_datasets): for the login side's
    preflight and prefetch, which import this plug-in, never its compute module."""
    from alignkit.plugins.benchmarks import lm_eval_run

    return lm_eval_run.task_datasets(task, include_path, cache)


def load_task_dataset(leaf: dict, cache_dir: str | None = None) -> None:
    """Prepare one task dataset in the cache the way lm-eval loads it (lm_eval_run.load_task_dataset)."""
    from alignkit.plugins.benchmarks import lm_eval_run

    lm_eval_run.load_task_dataset(leaf, cache_dir)
