"""The benchmark types: one module per type in this package, found through a registry.

`BENCHMARKS.get("lm_eval")` is the type's `Benchmark` subclass; `spec_class()` and
`config_class()` are the spec's and the job config's benchmark dataclasses, the union of every
type's fields (so the strict loader reads them); `resolve_config` is what the compiler writes
into a job's config for one benchmark. Adding a type: docs/evaluation.md "Adding a benchmark type".
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Literal, Optional

from alignkit.contract.benchmarks import Benchmark, JudgeContext, RunContext  # noqa: F401 (re-exported)
from alignkit.contract.registry import Registry


BENCHMARKS = Registry("benchmark type", __name__)

# The keys today's compiler wrote into every benchmark config whatever its type (the one
# BenchmarkSpec of before the registry): kept for every type so that no job id moves. A type's
# own fields beyond these appear only in that type's configs. `chat_template` is the exception
# it always was: only types that take it keep it.
LEGACY_KEYS = ("type", "task", "include_path", "filter", "num_fewshot", "metric", "limit", "chat_template",
               "source", "revision", "num_prompts", "max_new_tokens", "classifier", "classifier_revision",
               "judge", "reference", "annotator", "length_controlled")
_ONLY_OWN = ("chat_template",)
# Spec fields that say where a benchmark runs, not how: the compiler places the jobs by them
# (`checkpoints` is added per target), so they never enter a config (nor move a job id).
_NOT_IN_CONFIG = ("checkpoints", "runs")
# A field the benchmark's type does not take is an error naming the types that take it (before
# the registry such fields were silently ignored: sweeps/smoke.yaml's lm_eval bbh had a
# max_new_tokens that lm-eval never read; it is gone, and that mistake is now caught).
_TOLERATED = ("type",)


def get(type_name: str) -> Benchmark:
    """The benchmark type's instance (types hold no state)."""
    return _instance(type_name)


@functools.lru_cache(maxsize=None)
def _instance(type_name: str) -> Benchmark:
    return BENCHMARKS.get(type_name)()


def _own_fields(type_name: str) -> dict[str, tuple[Any, dataclasses.Field]]:
    cls = BENCHMARKS.get(type_name).fields
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def takes(type_name: str, key: str) -> bool:
    return key == "type" or key in _own_fields(type_name)


@functools.lru_cache(maxsize=None)
def _union() -> dict[str, tuple[Any, dataclasses.Field]]:
    """Every type's fields, once each; a field two types share must agree on type and default."""
    out: dict[str, tuple[Any, dataclasses.Field]] = {}
    for name in BENCHMARKS.names():
        for key, (tp, f) in _own_fields(name).items():
            if key in out and (out[key][0] != tp or out[key][1].default != f.default):
                raise TypeError(f"benchmark field '{key}': type '{name}' declares it differently from another type")
            out.setdefault(key, (tp, f))
    return out


def _make(cls_name: str, judge_type: Any, namespace: dict[str, Any] | None = None) -> type:
    fields: list[tuple] = [("type", Literal[tuple(BENCHMARKS.names())])]
    for key, (tp, f) in _union().items():
        if key == "judge":
            tp = judge_type
        fields.append((key, tp, dataclasses.field(default=f.default, metadata=f.metadata)))
    cls = dataclasses.make_dataclass(cls_name, fields, frozen=True, namespace=namespace)
    cls.__module__ = __name__
    return cls


@functools.lru_cache(maxsize=None)
def spec_class() -> type:
    """The spec's `evals.benchmarks.<name>` dataclass: `type` plus every type's fields (the
    per-type check refuses a field the type does not take)."""
    return _make("BenchmarkSpec", Optional[str])


@functools.lru_cache(maxsize=None)
def config_class() -> type:
    """A benchmark in an eval/judge job's config.json: the spec's fields, resolved, with the
    judge's resolved client settings (alignkit/contract/common.py JudgeClientConfig) instead of its name."""
    from alignkit.contract.common import JudgeClientConfig

    return _make("BenchmarkConfig", Optional[JudgeClientConfig], {"__unwritten__": _unwritten})


def _unwritten(cfg: Any) -> tuple[str, ...]:
    """config.json's benchmark holds its type's keys (config_keys) and its checkpoints; the judge's
    settings in judge jobs only; the type's `unwritten_at_default` fields only when set."""
    from alignkit.contract.serial import at_default

    return _other_keys(cfg.type) + at_default(cfg, "judge", "checkpoints", *get(cfg.type).unwritten_at_default)


@functools.lru_cache(maxsize=None)
def _other_keys(type_name: str) -> tuple[str, ...]:
    keep = {*config_keys(type_name), "checkpoints"}
    return tuple(k for k in ("type", *_union()) if k not in keep)


def reference_max_new_tokens() -> dict[str, int]:
    return {n: get(n).reference_max_new_tokens for n in BENCHMARKS.names()
            if get(n).reference_max_new_tokens is not None}


def config_keys(type_name: str) -> list[str]:
    """The keys of a benchmark config of this type (without `checkpoints` and `judge` resolution)."""
    keys = [k for k in LEGACY_KEYS if k not in _ONLY_OWN or takes(type_name, k)]
    return keys + [k for k in _own_fields(type_name) if k not in keys and k not in _NOT_IN_CONFIG]


def resolve_config(name: str, b: Any, model_spec: Any, with_judge: bool, *, spec: Any,
                   checkpoints: tuple[Any, ...] | None = None) -> Any:
    """Benchmark `name` of the spec, typed as a job config holds it (`checkpoints`: where it runs on
    this target; the compiler gives them): the values the type takes from elsewhere filled in
    (model_spec: the evaluated model, its ModelSpec or ModelConfig), local paths made absolute
    (relative to the spec file), and with `with_judge` (judge jobs) the judge's settings under "judge"
    (`judge_config`)."""
    from alignkit.spec.paths import resolve_source

    bench = get(b.type)
    cfg = {k: getattr(b, k) for k in config_keys(b.type)}
    cfg = bench.resolve(cfg, model_spec)
    for key in dict.fromkeys(("include_path", "source", "classifier") + bench.path_fields):
        if cfg.get(key):
            cfg[key] = resolve_source(spec.path.parent, cfg[key])
    judge = cfg.pop("judge", None)
    if with_judge and judge:
        cfg["judge"] = judge_config(judge, spec)
    return config_class()(**cfg, checkpoints=checkpoints)


def judge_config(name: str, spec: Any) -> Any:
    """The spec's judge `name` as a judged benchmark's config holds it: named, `source` absolute."""
    from alignkit.contract.common import JudgeClientConfig
    from alignkit.spec.paths import resolve_source

    j = spec.evals.judges[name]
    values = {f.name: getattr(j, f.name) for f in dataclasses.fields(j)}
    if values["source"]:
        values["source"] = resolve_source(spec.path.parent, values["source"])
    return JudgeClientConfig(**values, name=name)


def check(name: str, b: Any, path: str, judges: dict, problems: Any) -> None:
    """The spec-time checks of one benchmark: the type's own, then fields its type does not take."""
    from alignkit.contract.schema import join

    before = len(problems.items)
    get(b.type).check(b, path, judges, problems)
    named = problems.items[before:]  # a key the type's own check explains better is not named twice
    defaults = {f.name: f.default for f in dataclasses.fields(b)}
    for key, default in defaults.items():
        if key not in _TOLERATED and not takes(b.type, key) and getattr(b, key) != default:
            where = join(path, key)
            if any(f" {where}: " in line for line in named):
                continue
            owners = [n for n in BENCHMARKS.names() if takes(n, key)]
            problems.add(where, f"only {_a(owners[0])} {' or '.join(owners)} benchmark takes '{key}'")


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
