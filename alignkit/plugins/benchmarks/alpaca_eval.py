"""AlpacaEval (2 by default): outputs generated in the eval job, compared with the reference
outputs by the alpaca_eval package's annotator in the judge job."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from alignkit.plugins.benchmarks import BENCHMARKS
from alignkit.contract.benchmarks import Benchmark, JudgeContext, JudgedFields, JudgedShape, RunContext

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# What an unset (null) `reference` / `annotator` means: AlpacaEval 2, as the alpaca_eval package's
# own defaults (constants.get_alpaca_eval_data's file, constants.ANNOTATOR_CONFIG_AE2). The fields stay
# null in job configs (so no job id moves); reference_file() and annotator() are the one place that
# reads them, for the compute side (alpaca_eval_run.py).
DEFAULT_REFERENCE = "alpaca_eval_gpt4_baseline.json"
DEFAULT_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"


@dataclass(frozen=True)
class AlpacaEvalFields(JudgedFields):
    # the reference outputs file in `source` (null = alpaca_eval_gpt4_baseline.json, AlpacaEval 2's
    # GPT-4 Turbo outputs; alpaca_eval.json = AlpacaEval 1's davinci-003), the alpaca_eval package's
    # annotator config (null = weighted_alpaca_eval_gpt4_turbo; alpaca_eval_gpt4 = AlpacaEval 1's), and
    # whether to add its length-controlled win rate (needs df_gamed.csv and instruction_difficulty.csv)
    reference: Optional[str] = None
    annotator: Optional[str] = None
    length_controlled: bool = True
    # where df_gamed.csv and instruction_difficulty.csv are (a folder or hub dataset; null = `source`),
    # e.g. ../shared/data/alpaca_eval/length-controlled; in a job config only when set (ids unchanged)
    lc_source: Optional[str] = None


@BENCHMARKS.register("alpaca_eval")
class AlpacaEval(Benchmark):
    fields = AlpacaEvalFields
    generates = True
    judged = True
    reference_max_new_tokens = 2048  # alpaca_eval 0.6.6 models_configs/*/configs.yaml
    path_fields = ("source", "lc_source")
    unwritten_at_default = ("lc_source",)  # configs (and ids) of studies that do not set it stay as they were
    # AlpacaEval 2: 805 instructions; weighted_alpaca_eval_gpt4_turbo's prompt
    # (alpaca_eval src/alpaca_eval/evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt,
    # 1,365 characters without {instruction}/{output_1}/{output_2}) with max_tokens 1 (its configs.yaml);
    # instructions average 164.9 characters, the gpt4_1106_preview reference outputs 2,049.4 (the
    # leaderboard's avg_length for it is 2049).
    judge_shape = JudgedShape(items=805, template_chars=1365, instruction_chars=164.9, reference_chars=2049.4,
                              reply_tokens=1)

    def check(self, b: Any, path: str, judges: dict, problems: Any) -> None:
        from alignkit.contract.schema import join

        super().check(b, path, judges, problems)
        for key in ("reference", "annotator"):  # file/config names: they become paths on the compute node
            v = getattr(b, key)
            if v is not None and not _PLAIN_NAME.match(v):
                problems.add(join(path, key), f"{v!r} is not a plain file or config name (letters, digits, _ . -)")

    def run(self, ctx: RunContext, name: str, cfg: Any) -> tuple[dict, list[dict]]:
        from alignkit.plugins.benchmarks import alpaca_eval_run as alpaca_eval

        return alpaca_eval.generate(ctx.generator, ctx.tokenizer, cfg, f"benchmarks.{name}", ctx.generator_name)

    def prompts(self, tokenizer: Any, name: str, cfg: Any) -> tuple[list[str], int]:
        from alignkit.plugins.benchmarks import alpaca_eval_run as alpaca_eval

        return alpaca_eval.prompts(tokenizer, cfg, f"benchmarks.{name}")

    def write_outputs(self, gen_dir: Path, name: str, rows: list[dict]) -> None:
        from alignkit.contract.fsio import atomic_write_json

        atomic_write_json(gen_dir / f"{name}_model_outputs.json", rows)  # the alpaca_eval package's input format

    def own_judge(self, cfg: Any) -> bool:
        return cfg.judge is None or cfg.judge.type != "openai"  # openai: the alpaca_eval package makes the requests itself

    def score(self, ctx: JudgeContext, name: str, cfg: Any, rows: list[dict], judge: Any) -> tuple[dict, list[dict]]:
        from alignkit.plugins.benchmarks import alpaca_eval_run as alpaca_eval

        key = ("alpaca_eval_refs", name)
        if key not in ctx.cache:
            ctx.cache[key] = alpaca_eval.load(cfg, f"benchmarks.{name}")
        return alpaca_eval.score(rows, ctx.cache[key], cfg, cfg.judge, judge, ctx.cache_dir,
                                 ctx.eval_job, f"benchmarks.{name}")


def reference_file(cfg: Any) -> str:
    """The reference outputs file in `source` the config names; null: AlpacaEval 2's (DEFAULT_REFERENCE)."""
    return cfg.reference if cfg.reference is not None else DEFAULT_REFERENCE


def annotator(cfg: Any) -> str:
    """The alpaca_eval annotator config the config names; null: AlpacaEval 2's (DEFAULT_ANNOTATOR)."""
    return cfg.annotator if cfg.annotator is not None else DEFAULT_ANNOTATOR
