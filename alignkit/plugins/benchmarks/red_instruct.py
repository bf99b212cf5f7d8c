"""Red-Instruct (DangerousQA with the Chain of Utterances prompt): generated in the eval job,
judged harmful/harmless in the judge job (declare-lab/red-instruct's gpt4_as_judge.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.plugins.benchmarks import BENCHMARKS
from alignkit.contract.benchmarks import Benchmark, JudgeContext, JudgedFields, JudgedShape, RunContext


@dataclass(frozen=True)
class RedInstructFields(JudgedFields):
    pass


@BENCHMARKS.register("red_instruct")
class RedInstruct(Benchmark):
    fields = RedInstructFields
    generates = True
    judged = True
    reference_max_new_tokens = 500  # declare-lab/red-instruct generate_responses.py max_new_tokens=500
    path_fields = ("source",)
    # DangerousQA's 200 questions (41.5 characters on average), judged with the system + user prompt
    # of declare-lab/red-instruct gpt4_as_judge.py (363 + 48 characters); the official script sets
    # no reply limit: the judge's own applies.
    judge_shape = JudgedShape(items=200, template_chars=411, instruction_chars=41.46, reference_chars=0.0,
                              reply_tokens=None)

    def run(self, ctx: RunContext, name: str, cfg: Any) -> tuple[dict, list[dict]]:
        from alignkit.plugins.benchmarks import red_instruct_run as red_instruct

        return red_instruct.generate(ctx.generator, ctx.tokenizer, cfg, f"benchmarks.{name}")

    def prompts(self, tokenizer: Any, name: str, cfg: Any) -> tuple[list[str], int]:
        from alignkit.plugins.benchmarks import red_instruct_run as red_instruct

        _, prompts, max_new = red_instruct.prompts(tokenizer, cfg, f"benchmarks.{name}")
        return prompts, max_new

    def score(self, ctx: JudgeContext, name: str, cfg: Any, rows: list[dict], judge: Any) -> tuple[dict, list[dict]]:
        from alignkit.plugins.benchmarks import red_instruct_run as red_instruct

        return red_instruct.judge(rows, judge)
