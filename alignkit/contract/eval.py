"""The eval stage's typed config (what the compiler writes to config.json), its strict loader, and
the result store the eval and judge jobs share (docs/evaluation.md "Result store").

Torch-free: the login node (compile, collect) and the compute node (jobs/eval/stage.py) import it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from alignkit.plugins.benchmarks import config_class
from alignkit.contract.errors import UserError
from alignkit.contract.fsio import atomic_write_json, read_json
from alignkit.contract.schema import Problems, from_dict, is_missing
from alignkit.contract import ContractError, paths
from alignkit.contract.common import JudgeClientConfig, ModelConfig
from alignkit.contract.sections import GenerationSpec
from alignkit.contract.serial import at_default, identity, to_json  # a result's key drops the labels job ids drop

# A benchmark in a job config: `type` plus every type's fields (alignkit/benchmarks), resolved.
BenchmarkConfig = config_class()



@dataclass(frozen=True)
class Target:
    """What is evaluated. adapter/merged: the train/merge job `job` of this sweep; base: the untrained
    config["model"]; external: an existing LoRA adapter at `source` (abs path or hub id, at `revision`)
    on the base config["model"], with `name` as its label."""
    kind: Literal["adapter", "merged", "base", "external"] = "adapter"
    job: Optional[str] = None
    name: Optional[str] = None
    source: Optional[str] = None
    revision: Optional[str] = None

    def __unwritten__(self) -> tuple[str, ...]:
        """config.json: what names the target, each key only when set (an external adapter's revision
        always: null = main). Plain code: a plan makes one per eval job."""
        if self.kind in ("adapter", "merged") and self.name is None and self.source is None and self.revision is None:
            return ("name", "source", "revision") if self.job is not None else ("job", "name", "source", "revision")
        return at_default(self, *(("job", "name", "source") if self.kind == "external" else
                                  ("job", "name", "source", "revision")))

    def record(self) -> dict[str, Any]:
        """As the config gave it (unset fields left out): eval.json's provenance.target."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class GenerationConfig(GenerationSpec):
    """How the eval job generates (docs/evaluation.md "Generation evals"): the spec's GenerationSpec,
    its defaults included. hf: transformers' generate, what CI tests; vllm (opt-in, GPU clusters):
    first answers the first `agreement_prompts` prompts of each checkpoint with both engines and fails
    below `agreement_threshold` exact-match share. "auto" is the old default's name, kept readable: it
    means hf (it no longer switches engines)."""
    backend: Literal["hf", "vllm", "auto"] = GenerationSpec.backend


@dataclass(frozen=True)
class EvalConfig:
    stage: Literal["eval"]
    model: ModelConfig
    target: Target
    benchmarks: dict[str, BenchmarkConfig]
    axes: dict[str, Any] = field(default_factory=dict)  # labels
    checkpoints: tuple[Union[str, int, float], ...] = ("final",)  # a float: a fraction of training (num_train_epochs)
    generation: Optional[GenerationConfig] = None

    def __unwritten__(self) -> tuple[str, ...]:  # evals.generation only when set: other studies' ids stay
        return ("generation",) if self.generation is None else ()


def load_strict(cls: type, data: Any, file: str) -> Any:
    """`data` (config.json's content) as `cls`, strictly: an unknown key, a wrong type or a missing
    required key raises ContractError naming the file and the key (the first problem; more counted)."""
    if isinstance(data, (str, Path)):
        file, data = str(data), read_json(data)
    problems = Problems(file, {})
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if isinstance(benchmarks, dict):  # say which types exist, not only that this one does not
        from alignkit.plugins.benchmarks import BENCHMARKS

        for name, b in benchmarks.items():
            t = b.get("type") if isinstance(b, dict) else b
            if t not in BENCHMARKS.names():
                raise ContractError(f"{file}: benchmarks.{name}.type: {t!r} is not one of "
                                    f"{', '.join(BENCHMARKS.names())}")
    out = from_dict(cls, data, "", problems)
    if problems.items or is_missing(out):
        more = f" (and {len(problems.items) - 1} more)" if len(problems.items) > 1 else ""
        raise ContractError((problems.items[0] if problems.items else f"{file}: not a {cls.__name__}") + more)
    return out


def load_eval(data: Any, file: str = "config.json") -> EvalConfig:
    return load_strict(EvalConfig, data, file)


# ---- result store ---------------------------------------------------------------------------------

def _hash(material: dict) -> str:
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def target_identity(config: EvalConfig) -> dict[str, Any]:
    """Who the target is: its train/merge job id, or the external adapter / base model itself, on
    the model config it is evaluated with (template and dtype change generations)."""
    t = config.target
    who = {"kind": t.kind, "job": t.job} if t.kind in ("adapter", "merged") else identity(t)
    return {"target": who, "model": identity(config.model),
            "generation": identity(config.generation) if config.generation else None}


def eval_key(config: EvalConfig, checkpoint: str, benchmark: Any) -> tuple[str, dict]:
    """(key, material) of one (target, checkpoint, benchmark) result: the benchmark's config
    without its `checkpoints` list and judge block."""
    bench = {k: v for k, v in identity(benchmark).items() if k not in ("checkpoints", "judge")}
    material = {"stage": "eval", **target_identity(config), "checkpoint": str(checkpoint), "benchmark": bench}
    return _hash(material), material


def judge_key(eval_result_key: str, judge: Optional[JudgeClientConfig]) -> tuple[str, dict]:
    """(key, material) of the verdicts on one stored eval result by one judge (labels left out: the
    typed block's fields hash as the dict of them it replaced did, tests/contract/test_judge_block.py)."""
    material = {"stage": "judge", "eval": eval_result_key, "judge": identity(judge or {})}
    return _hash(material), material


@dataclass(frozen=True)
class StoredResult:
    """<sweep>/results/<key>.json: one (target, checkpoint, benchmark) result, eval or judge."""
    key: str
    stage: Literal["eval", "judge"]
    material: dict[str, Any]  # what the key hashes
    job: str  # the job that computed it
    benchmark: str  # its name in that job (a label)
    checkpoint: str
    entry: dict[str, Any]  # the eval.json / judge.json entry, without its job-relative file paths
    rows_file: Optional[str] = None  # generations (eval) or verdicts (judge), beside the record
    checkpoint_provenance: dict[str, Any] = field(default_factory=dict)  # adapter sha256, guard, timing
    created_at: float = 0.0


class ResultStore:
    """Results kept per (target, checkpoint, benchmark) in a sweep, shared by all its jobs."""

    def __init__(self, sweep_dir: Path) -> None:
        self.root = Path(sweep_dir) / paths.RESULTS

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> Optional[StoredResult]:
        """The stored result, or None when absent or unreadable (then it is computed again)."""
        p = self.path(key)
        try:
            rec = load_strict(StoredResult, read_json(p), str(p)) if p.is_file() else None
        except (OSError, ValueError, UserError):
            return None
        if rec is None or rec.key != key:
            return None
        if rec.rows_file and (not rec.rows_file.startswith(f"{key}.") or "/" in rec.rows_file
                              or not (self.root / rec.rows_file).is_file()):
            return None  # rows beside the record only (a record edited to point elsewhere is not followed)
        return rec

    def put(self, rec: StoredResult, rows: Optional[Path] = None) -> None:
        """Store `rec` (and its rows file) atomically: the rows first, the record last."""
        if rows is not None:
            name = f"{rec.key}{''.join(rows.suffixes)}"
            tmp = self.root / f".{name}.tmp"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(rows, tmp)
            tmp.replace(self.root / name)
            rec = dataclasses.replace(rec, rows_file=name)
        atomic_write_json(self.path(rec.key), to_json(dataclasses.replace(rec, created_at=rec.created_at or time.time())))

    def rows_path(self, rec: StoredResult) -> Optional[Path]:
        return self.root / rec.rows_file if rec.rows_file else None
