"""Merge stage: combine the final adapters of train jobs that share a base model into one model.

Recipe (config shape: docs/contract.md "merge"):
  1. check the inputs: each train job finished (DONE), has `adapter/`, and was trained on this
     merge's base model with the same base weights (else the merge has no common base);
  2. build the base the adapters were trained against with jobs.base_weights, the function the
     eval job uses too (LoRA: the base in model.dtype; QLoRA: the 4-bit base dequantized exactly as
     training used it), and write it in float32 (an exact upcast);
  3. fold each adapter into that base in float32 (PEFT merge_and_unload) -> one full model per input;
  4. mergekit merges the full models computing in float32 (`dtype: float32`) and casts only its
     output (`out_dtype`) to the base weights' dtype (jobs/merge/methods.py); for task-vector
     methods the base of step 2 is mergekit's base_model, so task vectors are exactly the deltas;
  5. write `model/` (HF format + tokenizer + generation config) and `merge.json`.
Why float32: a LoRA delta is small next to its weight. Folded in bfloat16 (8 significant bits) at
delta std 1e-4 on weights of std 0.02, a third of the delta is rounding error
(tests/unit/test_merge_precision.py); summed in bfloat16, each further step rounds again. In
float32 the only rounding that matters is the one cast on output.
Working copies live in `<job>/.merge-work/` and are removed at the end.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from alignkit import contract
from alignkit.contract import ContractError, paths
from alignkit.contract.merge import MergeConfig
from alignkit.contract.train import TrainConfig
from alignkit.contract.fsio import atomic_dir, atomic_write_json
from jobs import base_weights
from jobs.merge import methods as merge_methods
from jobs.base_weights import BaseWeights
from jobs.errors import JobFailure, Preempted

_MODEL_KEYS = ("source", "revision")
COMPUTE_DTYPE = "float32"  # folding and combining; the output is cast once, on write


def adapter_sha256(adapter_dir: Path) -> str:
    """One digest over the adapter's files (names and bytes), independent of listing order."""
    h = hashlib.sha256()
    for path in sorted(p for p in adapter_dir.iterdir() if p.is_file()):
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _inputs(job_dir: Path, config: MergeConfig) -> list[dict[str, Any]]:
    """The train jobs to merge, checked: finished, with an adapter, on this merge's base model."""
    ids = config.inputs
    if not ids:
        raise JobFailure(f"{job_dir / paths.CONFIG}: key 'inputs' must be a non-empty list of job ids")
    axes = list(config.input_axes) or [None] * len(ids)
    model = config.model
    out = []
    for i, job_id in enumerate(ids):
        d = job_dir.parent / str(job_id)
        adapter = d / paths.ADAPTER
        if not (d / paths.DONE).exists():
            raise JobFailure(f"input {job_id}: train job has not finished ({d / paths.DONE} missing)")
        if not (adapter / "adapter_config.json").exists():
            raise JobFailure(f"input {job_id}: no adapter at {adapter}")
        try:
            in_cfg = contract.load(d)
        except ContractError as exc:
            raise JobFailure(f"input {job_id}: {str(exc).splitlines()[0]}") from None
        if not isinstance(in_cfg, TrainConfig):
            raise JobFailure(f"input {job_id}: {d / paths.CONFIG} is not a train job's config")
        for key in _MODEL_KEYS:
            if getattr(in_cfg.model, key) != getattr(model, key):
                raise JobFailure(f"input {job_id}: trained on model.{key}={getattr(in_cfg.model, key)!r}, "
                                 f"this merge is for {getattr(model, key)!r}")
        quant = in_cfg.peft.quantization
        out.append({"id": str(job_id), "dir": d, "adapter": adapter, "quantization": quant,
                    "base": base_weights.of_train_job(d),
                    "axes": (axes[i] if i < len(axes) else None) or in_cfg.axes,
                    "peft": in_cfg.peft.name})
    quants = {repr(x["quantization"]) for x in out}
    if len(quants) > 1:
        raise JobFailure("inputs: adapters were trained with different quantization "
                         f"({' vs '.join(sorted(quants))}), so they have no common base to merge on")
    bases = {x["base"].describe() for x in out}
    if len(bases) > 1:
        raise JobFailure(f"inputs: adapters were trained on different base weights ({' vs '.join(sorted(bases))}), "
                         "so they have no common base to merge on")
    return out


def _save_base(bw: BaseWeights, out: Path) -> str:
    """Write the base the adapters were trained against, upcast to float32; return the dtype the
    weights have as trained (the merge's output dtype)."""
    import torch

    model = base_weights.load(bw, "cuda" if torch.cuda.is_available() else "cpu")
    trained_dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    model = model.to("cpu", getattr(torch, COMPUTE_DTYPE))
    model.config.dtype = getattr(torch, COMPUTE_DTYPE)
    model.save_pretrained(out)
    _copy_side_files(bw.source, bw.revision, out)
    return trained_dtype


def _copy_side_files(src: str, rev: str | None, out: Path) -> None:
    """Tokenizer and generation config of the base model, so the merged model loads like any other."""
    from transformers import AutoTokenizer, GenerationConfig

    AutoTokenizer.from_pretrained(src, revision=rev).save_pretrained(out)
    try:
        GenerationConfig.from_pretrained(src, revision=rev).save_pretrained(out)
    except OSError:  # models without generation_config.json: transformers' defaults apply
        pass


def _fold_adapter(base: Path, adapter: Path, out: Path) -> None:
    """base + adapter → a full model: PEFT merge_and_unload, W + scale·B·A computed in float32."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, COMPUTE_DTYPE))
    try:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as exc:
        raise JobFailure(f"adapter {adapter} does not fit the base model: {str(exc).splitlines()[0]}") from None
    model.save_pretrained(out)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "peft", "mergekit", "bitsandbytes", "safetensors"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _check_stop(stop: threading.Event) -> None:
    # Nothing here is worth keeping across a requeue: a merge is short, so just start over.
    if stop.is_set():
        raise Preempted("merge stopped; it restarts from scratch")


def run(job_dir: Path, config: MergeConfig, stop: threading.Event) -> None:
    job_dir = Path(job_dir)
    t_start = time.time()
    contract.expect(config, MergeConfig, "jobs.merge.stage.run")
    merge_cfg = config.merge
    inputs = _inputs(job_dir, config)
    try:
        spec = merge_methods.parse_spec(merge_cfg.method, merge_cfg.parameters, len(inputs))
    except merge_methods.MergeParameterError as exc:
        raise JobFailure(f"{job_dir / paths.CONFIG}: {exc}") from None
    bw: BaseWeights = inputs[0]["base"]
    seed = int(config.axes.get("seed") or 0)  # axes: the run's labels; a merge of seeded runs keeps the seed
    checksums = [adapter_sha256(x["adapter"]) for x in inputs]

    import torch

    timings: dict[str, float] = {}
    work = job_dir / ".merge-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        t = time.time()
        base_dir = work / "base"
        out_dtype = _save_base(bw, base_dir)
        timings["base_s"] = time.time() - t
        _check_stop(stop)
        t = time.time()
        fulls = []
        for i, x in enumerate(inputs):
            fulls.append(work / f"input-{i}")
            _fold_adapter(base_dir, x["adapter"], fulls[-1])
            _check_stop(stop)
        timings["fold_s"] = time.time() - t
        t = time.time()
        mk_cfg = merge_methods.mergekit_config(spec, fulls, base_dir if spec.uses_base else None,
                                               dtype=COMPUTE_DTYPE, out_dtype=out_dtype)
        with atomic_dir(job_dir / paths.MODEL) as out:
            merge_methods.run_mergekit(mk_cfg, out, seed=seed, cuda=torch.cuda.is_available())
            _copy_side_files(str(base_dir), None, out)
            if not any(out.glob("*.safetensors")):
                raise JobFailure(f"mergekit wrote no weights to {out}")
        timings["merge_s"] = time.time() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings["total_s"] = time.time() - t_start
    model_dir = job_dir / paths.MODEL
    atomic_write_json(job_dir / paths.MERGE, {
        "method": spec.method,
        "name": merge_cfg.name,
        "parameters": spec.resolved_parameters(),
        "seed": seed,
        "inputs": [{"job": x["id"], "axes": x["axes"], "peft": x["peft"], "adapter": str(x["adapter"]),
                    "adapter_sha256": c} for x, c in zip(inputs, checksums, strict=True)],
        "base": dict(bw.record(), task_vector_base=spec.uses_base),
        "dtype": out_dtype,  # of the written model; eval loads a merged target in it
        "compute_dtype": COMPUTE_DTYPE,
        "model_dir": str(model_dir),
        "model_bytes": sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()),
        "mergekit_config": {k: v for k, v in mk_cfg.items() if k not in ("models", "base_model")},
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "provenance": {"versions": _versions(), "host": platform.node(),
                       "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                       "code_commit": os.environ.get("ALIGNKIT_CODE_COMMIT")},
    })
