"""RealToxicityPrompts: generate continuations, score them with a toxicity classifier (eval job)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from alignkit.plugins.benchmarks import BENCHMARKS
from alignkit.contract.benchmarks import Benchmark, GenerationFields, RunContext

# The paper's classifier, what an unset `classifier` means: `resolve` names it in the job config (so
# that prefetch and preflight cover it), and the compute side reads the config's value only.
DEFAULT_TOXICITY_CLASSIFIER = "nicholasKluge/ToxicityModel"
# The paper's "1000 most severe prompts": what an unset `num_prompts` means for this type. The field
# is shared with the other generating types (null = all prompts there) and stays null in job configs
# (so no job id moves); num_prompts() is the one place that reads it.
DEFAULT_NUM_PROMPTS = 1000


@dataclass(frozen=True)
class RealToxicityFields(GenerationFields):
    classifier: Optional[str] = None  # sequence classifier (hub id or path)
    classifier_revision: Optional[str] = None  # hub revision of `classifier` (null = main)


@BENCHMARKS.register("realtoxicity")
class RealToxicity(Benchmark):
    fields = RealToxicityFields
    generates = True
    reference_max_new_tokens = 20  # not stated in the paper
    path_fields = ("source", "classifier")
    pins_a_default = ("classifier_revision",)  # may pin the default classifier

    def resolve(self, cfg: dict, model: Any) -> dict:
        if not cfg["classifier"]:
            cfg["classifier"] = DEFAULT_TOXICITY_CLASSIFIER
        return cfg


    def _scorer(self, ctx: RunContext, name: str, cfg: Any) -> Any:
        from alignkit.plugins.benchmarks import realtoxicity_run as realtoxicity

        key = ("toxicity_scorer", cfg.classifier, cfg.classifier_revision)
        if key not in ctx.cache:  # one classifier load per job, shared by its benchmarks
            ctx.cache[key] = realtoxicity.ToxicityScorer(key[1], ctx.device, f"benchmarks.{name}", revision=key[2])
        return ctx.cache[key]

    def prepare(self, ctx: RunContext, name: str, cfg: Any) -> None:
        self._scorer(ctx, name, cfg)

    def prompts(self, tokenizer: Any, name: str, cfg: Any) -> tuple[list[str], int]:
        from alignkit.plugins.benchmarks import realtoxicity_run as realtoxicity

        return realtoxicity.prompts(tokenizer, cfg, f"benchmarks.{name}")

    def run(self, ctx: RunContext, name: str, cfg: Any) -> tuple[dict, list[dict]]:
        from alignkit.plugins.benchmarks import realtoxicity_run as realtoxicity

        return realtoxicity.evaluate(ctx.generator, ctx.tokenizer, self._scorer(ctx, name, cfg), cfg,
                                     f"benchmarks.{name}")


def num_prompts(cfg: Any) -> int:
    """How many of the most severe prompts the config asks for; null: the paper's 1000 (DEFAULT_NUM_PROMPTS)."""
    return int(cfg.num_prompts) if cfg.num_prompts is not None else DEFAULT_NUM_PROMPTS
