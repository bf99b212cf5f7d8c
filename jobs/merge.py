"""Merge stage: combine the final adapters of train jobs that share a base model into one model.

Recipe (config shape: docs/contract.md "merge"):
  1. check the inputs: each train job finished (DONE), has `adapter/`, and was trained on this
     merge's base model with the same quantization (else the merge has no common base);
  2. build the base the adapters were trained against, in full precision:
       LoRA  → the base model in `model.dtype`;
       QLoRA → the base loaded in 4-bit exactly as training did (same BitsAndBytesConfig), then
               dequantized to the compute dtype. The adapter learned corrections to *these*
               weights (dequant(NF4(W))), so folding it into them reproduces the trained model;
               folding into 4-bit weights would re-quantize the sum and lose most of the small
               LoRA delta (the known pitfall), and folding into the original W adds the
               quantization error the adapter partly compensated for.
  3. fold each adapter into that base (PEFT merge_and_unload) → one full model per input;
  4. mergekit merges the full models (jobs/merge_methods.py); for task-vector methods the base
     of step 2 is mergekit's base_model, so task vectors are exactly the adapters' deltas;
  5. write `model/` (HF format + tokenizer + generation config) and `merge.json`.
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

from alignkit.fsio import atomic_dir, atomic_write_json, read_json
from jobs import merge_methods
from jobs.errors import JobFailure, Preempted

_DTYPES = ("float32", "bfloat16", "float16")
_MODEL_KEYS = ("source", "revision")


def _torch_dtype(name: str, where: str):
    import torch

    if name not in _DTYPES:
        raise JobFailure(f"{where}: dtype {name!r} is not one of {', '.join(_DTYPES)}")
    return getattr(torch, name)


def adapter_sha256(adapter_dir: Path) -> str:
    """One digest over the adapter's files (names and bytes), independent of listing order."""
    h = hashlib.sha256()
    for path in sorted(p for p in adapter_dir.iterdir() if p.is_file()):
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _inputs(job_dir: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The train jobs to merge, checked: finished, with an adapter, on this merge's base model."""
    ids = config.get("inputs")
    if not isinstance(ids, list) or not ids:
        raise JobFailure(f"{job_dir / 'config.json'}: key 'inputs' must be a non-empty list of job ids")
    axes = config.get("input_axes") or [None] * len(ids)
    model = config["model"]
    out = []
    for i, job_id in enumerate(ids):
        d = job_dir.parent / str(job_id)
        adapter = d / "adapter"
        if not (d / "DONE").exists():
            raise JobFailure(f"input {job_id}: train job has not finished ({d / 'DONE'} missing)")
        if not (adapter / "adapter_config.json").exists():
            raise JobFailure(f"input {job_id}: no adapter at {adapter}")
        try:
            in_cfg = read_json(d / "config.json")
        except (OSError, ValueError) as exc:
            raise JobFailure(f"input {job_id}: cannot read {d / 'config.json'}: {exc}") from None
        in_model = in_cfg.get("model", {})
        for key in _MODEL_KEYS:
            if in_model.get(key) != model.get(key):
                raise JobFailure(f"input {job_id}: trained on model.{key}={in_model.get(key)!r}, "
                                 f"this merge is for {model.get(key)!r}")
        quant = (in_cfg.get("peft") or {}).get("quantization")
        out.append({"id": str(job_id), "dir": d, "adapter": adapter, "quantization": quant,
                    "axes": (axes[i] if i < len(axes) else None) or in_cfg.get("axes"),
                    "peft": (in_cfg.get("peft") or {}).get("name")})
    quants = {repr(x["quantization"]) for x in out}
    if len(quants) > 1:
        raise JobFailure("inputs: adapters were trained with different quantization "
                         f"({' vs '.join(sorted(quants))}), so they have no common base to merge on")
    return out


def _bnb_config(quant: dict[str, Any]):
    import torch
    from transformers import BitsAndBytesConfig

    if quant.get("bits", 4) != 4:
        raise JobFailure(f"peft.quantization.bits: only 4-bit QLoRA adapters can be merged, got {quant['bits']}")
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=quant.get("quant_type", "nf4"),
        bnb_4bit_use_double_quant=bool(quant.get("double_quant", True)),
        bnb_4bit_compute_dtype=_torch_dtype(quant.get("compute_dtype", "bfloat16"),
                                            "peft.quantization.compute_dtype"),
        bnb_4bit_quant_storage=getattr(torch, quant.get("storage_dtype") or "uint8"))


def _save_base(model_cfg: dict[str, Any], quant: dict[str, Any] | None, dtype, out: Path) -> str:
    """Write the full-precision base the adapters were trained against; return how it was made."""
    import torch
    from transformers import AutoModelForCausalLM

    src, rev = model_cfg["source"], model_cfg.get("revision") or None
    device = {"": 0} if torch.cuda.is_available() else {"": "cpu"}
    try:
        if quant:
            model = AutoModelForCausalLM.from_pretrained(src, revision=rev, dtype=dtype, device_map=device,
                                                         quantization_config=_bnb_config(quant))
            model = model.dequantize(dtype=dtype)
            how = f"dequantized {quant.get('quant_type', 'nf4')} 4-bit base in {str(dtype).removeprefix('torch.')}"
        else:
            model = AutoModelForCausalLM.from_pretrained(src, revision=rev, dtype=dtype)
            how = f"base in {str(dtype).removeprefix('torch.')}"
    except OSError as exc:
        raise JobFailure(f"cannot load base model {src!r}: {str(exc).splitlines()[0]}") from None
    model.to("cpu").save_pretrained(out)
    _copy_side_files(src, rev, out)
    return how


def _copy_side_files(src: str, rev: str | None, out: Path) -> None:
    """Tokenizer and generation config of the base model, so the merged model loads like any other."""
    from transformers import AutoTokenizer, GenerationConfig

    AutoTokenizer.from_pretrained(src, revision=rev).save_pretrained(out)
    try:
        GenerationConfig.from_pretrained(src, revision=rev).save_pretrained(out)
    except OSError:  # models without generation_config.json: transformers' defaults apply
        pass


def _fold_adapter(base: Path, adapter: Path, dtype, out: Path) -> None:
    """base + adapter → a full model (PEFT merge_and_unload in `dtype`)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
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


def run(job_dir: Path, config: dict[str, Any], stop: threading.Event) -> None:
    job_dir = Path(job_dir)
    t_start = time.time()
    merge_cfg = config.get("merge") or {}
    inputs = _inputs(job_dir, config)
    try:
        spec = merge_methods.parse_spec(merge_cfg.get("method", ""), merge_cfg.get("parameters"), len(inputs))
    except merge_methods.MergeParameterError as exc:
        raise JobFailure(f"{job_dir / 'config.json'}: {exc}") from None
    quant = inputs[0]["quantization"]
    dtype_name = quant.get("compute_dtype", "bfloat16") if quant else config["model"].get("dtype", "bfloat16")
    dtype = _torch_dtype(dtype_name, "model.dtype" if not quant else "peft.quantization.compute_dtype")
    seed = int((config.get("axes") or {}).get("seed") or 0)
    checksums = [adapter_sha256(x["adapter"]) for x in inputs]

    import torch

    timings: dict[str, float] = {}
    work = job_dir / ".merge-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        t = time.time()
        base_dir = work / "base"
        base_how = _save_base(config["model"], quant, dtype, base_dir)
        timings["base_s"] = time.time() - t
        _check_stop(stop)
        t = time.time()
        fulls = []
        for i, x in enumerate(inputs):
            fulls.append(work / f"input-{i}")
            _fold_adapter(base_dir, x["adapter"], dtype, fulls[-1])
            _check_stop(stop)
        timings["fold_s"] = time.time() - t
        t = time.time()
        mk_cfg = merge_methods.mergekit_config(spec, fulls, base_dir if spec.uses_base else None, dtype_name)
        with atomic_dir(job_dir / "model") as out:
            merge_methods.run_mergekit(mk_cfg, out, seed=seed, cuda=torch.cuda.is_available())
            _copy_side_files(str(base_dir), None, out)
            if not any(out.glob("*.safetensors")):
                raise JobFailure(f"mergekit wrote no weights to {out}")
        timings["merge_s"] = time.time() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings["total_s"] = time.time() - t_start
    model_dir = job_dir / "model"
    atomic_write_json(job_dir / "merge.json", {
        "method": spec.method,
        "name": merge_cfg.get("name", spec.method),
        "parameters": spec.resolved_parameters(),
        "seed": seed,
        "inputs": [{"job": x["id"], "axes": x["axes"], "peft": x["peft"], "adapter": str(x["adapter"]),
                    "adapter_sha256": c} for x, c in zip(inputs, checksums, strict=True)],
        "base": {"source": config["model"]["source"], "revision": config["model"].get("revision"),
                 "how": base_how, "quantization": quant, "task_vector_base": spec.uses_base},
        "dtype": dtype_name,
        "model_dir": str(model_dir),
        "model_bytes": sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()),
        "mergekit_config": {k: v for k, v in mk_cfg.items() if k not in ("models", "base_model")},
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "provenance": {"versions": _versions(), "host": platform.node(),
                       "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                       "code_commit": os.environ.get("ALIGNKIT_CODE_COMMIT")},
    })
