"""What every benchmark type is: its typed spec fields and the hooks the compiler and the jobs call.

A type lives in one module of this package (alignkit/plugins/benchmarks/<type>.py) and registers a
`Benchmark` subclass with `@BENCHMARKS.register("<type>")`. Nothing here imports torch: the
`run`/`score` hooks import the heavy job-side modules inside the function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

Scalar = Union[str, int]


@dataclass(frozen=True)
class CommonFields:
    # where this benchmark runs: steps and/or "final" (null = evals.checkpoints); a subset of
    # evals.checkpoints, e.g. a judged benchmark at the final checkpoint only
    checkpoints: Optional[tuple[Union[str, int, float], ...]] = None  # a float in (0, 1): that fraction of training
    # which trained runs it evaluates: every run, or only those the spec's `select:` picks (a
    # two-phase study: `alignkit collect` writes the selection, a second `alignkit submit` adds
    # these jobs; docs/collect.md "Two-phase studies"). Not in the job's config: the job is the same.
    runs: Literal["all", "selected"] = "all"


@dataclass(frozen=True)
class GenerationFields(CommonFields):
    source: Optional[str] = None  # dataset file/dir or hub id
    revision: Optional[str] = None  # hub revision of `source` (null = main; ignored for local paths)
    num_prompts: Optional[int] = None
    # generation length; null = the type's reference setting (Benchmark.reference_max_new_tokens)
    max_new_tokens: Optional[int] = None


@dataclass(frozen=True)
class JudgedFields(GenerationFields):
    judge: Optional[str] = None  # a name in evals.judges


@dataclass(frozen=True)
class JudgedShape:
    """What one judge call of a benchmark holds, measured on the benchmark's official files
    (alignkit/plan/judge_cost.py turns it into tokens and cost)."""
    items: int  # items judged per checkpoint when the benchmark sets no num_prompts
    template_chars: int  # the judge prompt without its placeholders
    instruction_chars: float  # mean instruction / question
    reference_chars: float  # mean reference output shown beside the model's (0: none)
    reply_tokens: int | None  # the judge's reply; None: up to the judge's own limit


@dataclass
class RunContext:
    """What the eval job hands a benchmark at one checkpoint (one base load for all of them)."""
    model: Any  # the base with this checkpoint's adapter active, or a full model
    tokenizer: Any
    device: str
    generator: Any  # jobs.eval.generate.HFGenerator / VLLMGenerator, None when nothing generates
    gen_dir: Path  # <eval job>/generations/<checkpoint>/
    generator_name: str  # AlpacaEval's `generator` column: model/target/checkpoint
    cache: dict = field(default_factory=dict)  # per job: lm-eval task managers, loaded classifiers


@dataclass
class JudgeContext:
    """What the judge job hands a judged benchmark."""
    cache_dir: Path  # the sweep's judge reply cache
    eval_job: str  # the eval job whose generations are judged
    cache: dict = field(default_factory=dict)  # per job: loaded reference outputs


class Benchmark:
    """One benchmark type. Subclasses set the class attributes and override the hooks they need.
    The job-side hooks get `cfg`, the benchmark's typed config (alignkit.plugins.benchmarks.config_class())."""

    fields: type = CommonFields  # its spec fields (a frozen dataclass); `type` is added by the registry
    generates: bool = False  # writes generations (so the eval job builds a generator)
    judged: bool = False  # scored by the judge job from its generations
    reference_max_new_tokens: Optional[int] = None  # the reference's generation length
    judge_shape: Optional[JudgedShape] = None  # judged types: for plan's judge-cost estimate
    path_fields: tuple[str, ...] = ()  # fields holding a hub id or a local path (relative to the spec)
    pins_a_default: tuple[str, ...] = ()  # revision fields that may pin a default (unset) source
    revision_hint = ""  # added to the "'revision' pins 'source'" problem
    unwritten_at_default: tuple[str, ...] = ()  # own fields in config.json only when set (older ids stay)

    # ---- compile time (login node) ----------------------------------------------------------
    def resolve(self, cfg: dict, model: Any) -> dict:
        """Fill the values the type takes from elsewhere (cfg: its config keys; model: the evaluated
        model's ModelSpec or ModelConfig)."""
        return cfg

    def check(self, b: Any, path: str, judges: dict, problems: Any) -> None:
        """Spec-time checks of this type's fields, one line each (b: the spec's benchmark)."""
        from alignkit.contract.schema import join

        if self.generates and not getattr(b, "source", None):
            problems.add(join(path, "source"), f"a {b.type} benchmark needs 'source' (its data file or hub id)")
        if self.judged:
            if not b.judge:
                problems.add(join(path, "judge"), f"a {b.type} benchmark needs 'judge' (a name in evals.judges)")
            elif b.judge not in judges:
                problems.add(join(path, "judge"),
                             f"unknown judge '{b.judge}' (known: {', '.join(judges) or 'none defined'})")
        for key in ("num_fewshot", "limit", "num_prompts"):
            v = getattr(b, key, None)
            if v is not None and (v < 0 or (v == 0 and key != "num_fewshot")):
                problems.add(join(path, key), f"must be positive, got {v}")
        v = getattr(b, "max_new_tokens", None)
        if v is not None and v <= 0:
            problems.add(join(path, "max_new_tokens"), f"must be positive, got {v}")
        for key, needs in (("revision", "source"), ("classifier_revision", "classifier")):
            if getattr(b, key, None) is not None and not getattr(b, needs, None) and key not in self.pins_a_default:
                problems.add(join(path, key), f"'{key}' pins '{needs}', which this benchmark does not set"
                             + self.revision_hint)

    # ---- eval job (compute node) ----------------------------------------------------------
    def generation_length(self, cfg: Any) -> int:
        """The new-token budget of a generating type: the config's `max_new_tokens`, or when unset
        (null) the reference's own setting, `reference_max_new_tokens` (the one place of that rule
        on the compute side)."""
        if cfg.max_new_tokens is not None:
            return int(cfg.max_new_tokens)
        if self.reference_max_new_tokens is None:
            raise TypeError(f"benchmark type {cfg.type!r} does not generate")
        return self.reference_max_new_tokens

    def prepare(self, ctx: RunContext, name: str, cfg: Any) -> None:
        """Once per eval job, before the first checkpoint (e.g. load a classifier)."""

    def run(self, ctx: RunContext, name: str, cfg: Any) -> tuple[dict, Optional[list[dict]]]:
        """Evaluate at the active checkpoint: (eval.json entry, generated rows or None)."""
        raise NotImplementedError

    def prompts(self, tokenizer: Any, name: str, cfg: Any) -> tuple[list[str], int]:
        """Generating types: (the rendered prompts, max_new_tokens) exactly as `run` sends them to the
        generator; `alignkit preview --job EVAL_JOB` shows them (reads the tokenizer and data only)."""
        raise NotImplementedError

    def write_outputs(self, gen_dir: Path, name: str, rows: list[dict]) -> None:
        """Files derived from the generated rows beside <name>.jsonl (also when a stored result is reused)."""

    # ---- judge job (CPU node) ------------------------------------------------------------------
    def own_judge(self, cfg: Any) -> bool:
        """Whether the judge job builds the judge client (jobs.judge.judges) for this benchmark."""
        return True

    def score(self, ctx: JudgeContext, name: str, cfg: Any, rows: list[dict], judge: Any) -> tuple[dict, list[dict]]:
        """Judge one checkpoint's generations: (judge.json entry, verdict rows)."""
        raise NotImplementedError
