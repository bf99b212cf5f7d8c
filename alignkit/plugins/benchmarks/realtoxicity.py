"""RealToxicityPrompts: generate continuations, score them with a toxicity classifier (eval job)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from alignkit.plugins.benchmarks import BENCHMARKS
from alignkit.contract.benchmarks import Benchmark, GenerationFields, RunContext

# alignkit/plugins/benchmarks/realtoxicity_run.py's default, the paper's classifier: named in the config so that
# prefetch and preflight cover it
DEFAULT_TOXICITY_CLASSIFIER = "nicholasKluge/ToxicityModel"


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

        key = ("toxicity_scorer", cfg.classifier or realtoxicity.DEFAULT_CLASSIFIER, cfg.classifier_revision)
        if key not in ctx.cache:  # one classifier load per job, shared by its benchmarks
            ctx.cache[key] = realtoxicity.ToxicityScorer(key[1], ctx.device, f"benchmarks.{name}", revision=key[2])
        return ctx.cache[key]

    def prepare(self, ctx: RunContext, name: str, cfg: Any) -> None:
        self._scorer(ctx, name, cfg)

    def prompts(self, tokenizer: Any, name: str, cfg: Any) -> tuple[list[str], int]:
        from alignkit.contract.eval import as_dict
        from alignkit.plugins.benchmarks import realtoxicity_run as realtoxicity

        return realtoxicity.prompts(tokenizer, as_dict(cfg), f"benchmarks.{name}")

    def run(self, ctx: RunContext, name: str, cfg: Any) -> tuple[dict, list[dict]]:
        from alignkit.contract.eval import as_dict
        from alignkit.plugins.benchmarks import realtoxicity_run as realtoxicity

        return realtoxicity.evaluate(ctx.generator, ctx.tokenizer, self._scorer(ctx, name, cfg), as_dict(cfg),
                                     f"benchmarks.{name}")
