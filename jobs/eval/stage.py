"""The eval stage: one base load, every checkpoint's adapter swapped in, every benchmark run on each.

Recipe (config: alignkit/contract/eval.py EvalConfig; outputs and the store: docs/evaluation.md):
  1. resolve the target: `<sweep>/jobs/<target.job>/`; checkpoint N -> checkpoints/step-N/ (a
     fraction of training -> the step the train job's train_metrics.json "fraction_steps" gives it),
     "final" -> adapter/; target.kind "merged" -> model/ (a full model, no adapter, "final" only);
     "external" -> the adapter at target.source (a path or a hub id at target.revision, "final" only)
  2. look every (checkpoint, benchmark) up in the sweep's result store (<sweep>/results/, keyed by
     target, checkpoint and benchmark config; an adapter's stored sha256 must match): what is there
     is reused, only the rest is computed (a requeued job, or a study given one more benchmark)
  3. when anything is left: load the tokenizer (with the model family's template) and the target's
     base weights once (jobs.base_weights, the function the merge job uses too: a QLoRA target gets
     its 4-bit base dequantized exactly as training used it, a LoRA target the base in `model.dtype`)
  4. per checkpoint with work left: load its adapter beside the previous one, switch to it, drop
     the previous; check on a probe input that the adapter changes the logits (else fail: an adapter
     that is silently not applied would report the base model's scores as the run's)
  5. per benchmark left at this checkpoint: its type's `run` (alignkit/plugins/benchmarks/<type>.py: lm-eval
     tasks, RealToxicityPrompts generate + score, Red-Instruct and AlpacaEval generate only; jobs.judge.stage
     scores them on a CPU node); each result goes to the store as soon as it exists
  6. after each checkpoint, write eval.json atomically; generations under generations/<ckpt>/
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from alignkit.plugins import benchmarks as benchmarks_reg
from alignkit.plugins.benchmarks import RunContext
from alignkit import contract
from alignkit.contract import expect
from alignkit.contract.common import ModelConfig
from alignkit.contract.eval import (EvalConfig, ResultStore, StoredResult, Target, eval_key)
from alignkit.contract.checkpoints import FINAL, is_fraction
from alignkit.contract.fsio import atomic_write_json, atomic_write_text, read_json
from alignkit.contract import paths as jobfiles
from jobs import base_weights
from alignkit.plugins.benchmarks import lm_eval_run
from jobs.base_weights import BaseWeights
from jobs.errors import JobFailure, Preempted
from jobs.eval.task_progress import TaskProgress
from jobs.data.templates import apply_template

PROBE_TEXT = "The quick brown fox jumps over the lazy dog. Question: what is 2 plus 2? Answer:"
# The guard's tolerance, relative to the logits' scale: a LoRA whose B is zero, or whose target
# modules matched nothing, adds exactly 0, so any real adapter clears this by orders of magnitude.
GUARD_RTOL = 1e-6


def runs_at(benchmark: Any, ckpt: str) -> bool:
    """A benchmark runs at the checkpoints its config lists (`checkpoints`; absent: all of the job's)."""
    at = benchmark.checkpoints
    return at is None or ckpt in {str(c) for c in at}


def checkpoint_dir(target_dir: Path, kind: str, ckpt: str) -> Path:
    if kind == "merged":
        if ckpt != FINAL:
            raise JobFailure(f"checkpoints: a merged target has only 'final', not {ckpt!r}")
        return target_dir / jobfiles.MODEL
    if is_fraction(ckpt):
        return jobfiles.step_dir(target_dir, fraction_step_of(target_dir, ckpt))
    return target_dir / jobfiles.ADAPTER if ckpt == FINAL else jobfiles.step_dir(target_dir, int(ckpt))


def fraction_step_of(target_dir: Path, ckpt: str) -> int:
    """A fraction of training (num_train_epochs) as the step the train job recorded for it."""
    tm = target_dir / jobfiles.TRAIN_METRICS
    steps = (read_json(tm).get("fraction_steps") or {}) if tm.is_file() else {}
    if ckpt not in steps:
        raise JobFailure(f"checkpoint {ckpt}: {tm} records no step for this fraction of training "
                         f"(has the target job finished?)")
    return int(steps[ckpt])


def adapter_sha256(path: Path) -> str | None:
    f = path / "adapter_model.safetensors"
    if not f.is_file():
        return None
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _validate(config: EvalConfig) -> tuple[str, list[str]]:
    t = config.target
    if t.kind in ("adapter", "merged") and not t.job:
        raise JobFailure(f"config.json target.job: a {t.kind} target names its job")
    if t.kind == "external" and not t.source:
        raise JobFailure("config.json target.source: an external target names its adapter (a path or hub id)")
    ckpts = [str(c) for c in config.checkpoints] or ["final"]
    if t.kind in ("base", "external") and ckpts != ["final"]:
        what = "the untrained base model" if t.kind == "base" else "an external adapter"
        raise JobFailure(f"config.json checkpoints: {what} has only 'final'")
    if not config.benchmarks:
        raise JobFailure("config.json benchmarks: empty; nothing to evaluate")
    return t.kind, ckpts


def external_adapter(target: Target) -> Path:
    """The external adapter's folder: a local path, or the hub snapshot (prefetched; offline here)."""
    src = str(target.source)
    if Path(src).is_dir():
        return Path(src)
    if src.startswith(("/", "./", "../", "~")):
        raise JobFailure(f"config.json target.source: {src} does not exist")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(src, revision=target.revision))
    except Exception as exc:  # not in the cache / unknown repo: one line, naming it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise JobFailure(f"config.json target.source: cannot load adapter {src}{'@' + target.revision if target.revision else ''}: "
                         f"{type(exc).__name__}: {first}") from None


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(model_cfg: ModelConfig, path: str | Path, device: str) -> Any:
    """The plain base (or a full model at `path`) in `model.dtype`; see target_base for targets."""
    rev = model_cfg.revision if str(path) == model_cfg.source else None
    return base_weights.load(base_weights.of_model(replace(model_cfg, source=str(path), revision=rev)), device)


def target_base(kind: str, config: EvalConfig, job_dir: Path, paths: dict[str, Path]) -> BaseWeights:
    """The weights this eval job's target runs on, one per job (so per target, LoRA or QLoRA).

    adapter:  the base its train job trained on (jobs.base_weights.of_train_job), which must be the
              model this eval config names; a target without a config.json (a hand-made layout,
              never a sweep's train job) is a LoRA adapter on the eval config's model.
    merged:   the merge's model/ in the dtype the merge wrote it (merge.json "dtype").
    base:     the untrained model in `model.dtype`.
    external: a LoRA adapter on the eval config's model, in `model.dtype`.
    """
    model_cfg = config.model
    if kind == "merged":
        rec = paths["final"].parent / jobfiles.MERGE
        dtype = read_json(rec).get("dtype") if rec.is_file() else None
        return base_weights.of_model(replace(model_cfg, source=str(paths["final"]), revision=None,
                                             dtype=dtype or config.model.dtype))
    if kind == "adapter":
        target_dir = job_dir.parent / str(config.target.job)
        if (target_dir / jobfiles.CONFIG).is_file():
            bw = base_weights.of_train_job(target_dir)
            m = config.model
            chained = base_weights.merged_init(target_dir, contract.load(target_dir))  # its own base
            if chained is None and (bw.source, bw.revision) != (str(m.source), m.revision or None):
                raise JobFailure(f"config.json model: {m.source!r} (revision {m.revision!r}) "
                                 f"is not the base target {config.target.job} was trained on "
                                 f"({bw.source!r}, revision {bw.revision!r})")
            return bw
    return base_weights.of_model(model_cfg)


def load_tokenizer(model_cfg: ModelConfig, path: str | Path) -> Any:
    from transformers import AutoTokenizer

    expect(model_cfg, ModelConfig, "jobs.eval.stage.load_tokenizer")
    rev = model_cfg.revision if str(path) == model_cfg.source else None
    try:
        tok = AutoTokenizer.from_pretrained(str(path), revision=rev)
    except OSError as exc:
        raise JobFailure(f"cannot load tokenizer of {path}: {str(exc).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    apply_template(tok, model_cfg)
    return tok


class AdapterSlot:
    """The base model with one active adapter; `swap` loads the next and drops the previous."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.model: Any = base
        self.active: str | None = None

    def swap(self, ckpt: str, path: Path) -> Any:
        from peft import PeftModel

        name = f"ckpt_{ckpt}".replace(".", "_")  # a fraction of training: PEFT names are module names
        try:
            if self.active is None:
                self.model = PeftModel.from_pretrained(self.base, str(path), adapter_name=name, is_trainable=False)
            else:
                self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
                self.model.set_adapter(name)
                self.model.delete_adapter(self.active)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise JobFailure(f"cannot load adapter {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self.active = name
        self.model.eval().requires_grad_(False)  # inference only: no autograd bookkeeping anywhere
        return self.model


def adapter_guard(model: Any, tok: Any, path: Path, device: str) -> float:
    """Fail unless the active adapter changes the logits on a probe input; return the max change."""
    import torch

    enc = tok(PROBE_TEXT, return_tensors="pt").to(device)
    with torch.no_grad():
        with_adapter = model(**enc).logits.float()
        with model.disable_adapter():
            base = model(**enc).logits.float()
    diff = (with_adapter - base).abs().max().item()
    if not diff > GUARD_RTOL * max(1.0, base.abs().max().item()):
        raise JobFailure(
            f"adapter at {path} does not change the model's logits (max |diff| {diff:.3g} on a probe input); "
            f"it is not applied (target modules that match nothing, zero weights, or a wrong base)")
    return diff


def _make_generator(kind: str, bw: BaseWeights, tok: Any, model: Any, device: str,
                    paths: dict[str, Path], generation: Any, work: Path) -> Any:
    """HF generate unless the config opts into vLLM (docs/evaluation.md "Generation evals"); "auto"
    (the old default, which switched to vLLM whenever it was installed) now means HF too."""
    from jobs.eval.generate import CheckedVLLM, HFGenerator, VLLMGenerator, context_length

    hf = HFGenerator(model, tok, device)
    if generation is None or generation.backend != "vllm":
        return hf
    import importlib.util

    if importlib.util.find_spec("vllm") is None or device != "cuda":
        raise JobFailure("config.json generation.backend: vllm is asked for but "
                         + ("vllm is not installed" if device == "cuda" else "there is no CUDA device")
                         + "; use backend: hf")
    lora = kind in ("adapter", "external")
    ranks = [read_json(p / "adapter_config.json").get("r", 16) for p in paths.values()] if lora else [16]
    source, revision = bw.source, bw.revision
    if bw.quantization:  # vLLM must serve the dequantized weights, not the checkpoint's: write them
        model.save_pretrained(work)
        tok.save_pretrained(work)
        source, revision = str(work), None
    engine = VLLMGenerator(source, revision, bw.dtype, max(ranks), lora, tok, context_length(model.config))
    return CheckedVLLM(engine, hf, generation.agreement_prompts, generation.agreement_threshold)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _provenance(config: EvalConfig, kind: str, device: str, backend: str) -> dict:
    import peft
    import torch
    import transformers

    m = config.model
    return {
        "lm_eval_version": lm_eval_run.lm_eval_version(), "transformers_version": transformers.__version__,
        "peft_version": peft.__version__, "torch_version": torch.__version__,
        "base_model": {"source": m.source, "revision": m.revision, "dtype": m.dtype, "name": m.name, "kind": m.kind},
        "template": m.template, "target": config.target.record(),
        "device": device, "generation_backend": backend, "checkpoints": {},
    }


def _check_stop(stop: threading.Event, job_dir: Path, result: dict) -> None:
    if stop.is_set():
        atomic_write_json(job_dir / jobfiles.EVAL, result)
        raise Preempted("eval: stopped between checkpoints; finished checkpoints are in eval.json")


def _target_paths(kind: str, config: EvalConfig, job_dir: Path, ckpts: list[str]) -> dict[str, Path]:
    if kind == "base":  # the untrained model itself (the paper's "Original" rows)
        return {"final": Path(config.model.source)}
    if kind == "external":
        return {"final": external_adapter(config.target)}
    target_dir = job_dir.parent / str(config.target.job)
    paths = {c: checkpoint_dir(target_dir, kind, c) for c in ckpts}
    for c, p in paths.items():
        if not p.is_dir():
            raise JobFailure(f"checkpoint {c}: {p} does not exist (has the target job {config.target.job} finished?)")
    return paths


def _reuse(store: ResultStore, rec: StoredResult, bench: Any, name: str, gen_dir: Path, job_dir: Path) -> dict:
    """A stored result as this job's entry: its generations copied under this job's name for it."""
    entry = dict(rec.entry, result_key=rec.key, reused=True, reused_from=rec.job)
    rows = store.rows_path(rec)
    if rows is not None:
        dest = gen_dir / f"{name}.jsonl"
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dest, rows.read_text(encoding="utf-8"))
        bench.write_outputs(gen_dir, name, [json.loads(x) for x in dest.read_text(encoding="utf-8").splitlines() if x])
        entry["generations"] = str(dest.relative_to(job_dir))
    return entry


def run(job_dir: Path, config: EvalConfig, stop: threading.Event) -> None:
    job_dir = Path(job_dir)
    expect(config, EvalConfig, "jobs.eval.stage.run")
    kind, ckpts = _validate(config)
    benchmarks = config.benchmarks
    adapters = kind in ("adapter", "external")  # a LoRA adapter swapped onto the base
    device = _device()

    # 1. resolve every checkpoint first (fail before loading anything)
    paths = _target_paths(kind, config, job_dir, ckpts)
    shas = {c: adapter_sha256(p) if adapters else None for c, p in paths.items()}
    for c, s in shas.items():
        if adapters and s is None:
            raise JobFailure(f"checkpoint {c}: {paths[c]} has no adapter_model.safetensors")
    # 2. what the store already holds (same target, checkpoint, benchmark config and adapter bytes)
    store = ResultStore(job_dir.parent.parent)
    keys = {(c, n): eval_key(config, c, b) for c in ckpts for n, b in benchmarks.items() if runs_at(b, c)}
    stored: dict[tuple[str, str], StoredResult] = {}
    for (c, n), (key, _) in keys.items():
        rec = store.get(key)
        if rec is not None and rec.checkpoint_provenance.get("adapter_sha256") == shas[c]:
            stored[(c, n)] = rec
    todo = [c for c in ckpts if any((c, n) in keys and (c, n) not in stored for n in benchmarks)]

    result: dict = {"checkpoints": {}}
    if kind == "adapter" and any(is_fraction(c) for c in ckpts):  # num_train_epochs: what each fraction became
        result["fraction_steps"] = {c: fraction_step_of(job_dir.parent / str(config.target.job), c)
                                    for c in ckpts if is_fraction(c)}
    bw = target_base(kind, config, job_dir, paths)
    generator = None
    work = job_dir / ".eval-base"  # the dequantized base, only when vLLM serves a QLoRA target
    ctx = None
    backend, load_s = "none", None
    if todo:
        # 3. one base load for all checkpoints
        t0 = time.time()
        tok = load_tokenizer(config.model, bw.source)
        base = base_weights.load(bw, device)
        load_s = time.time() - t0
        slot = AdapterSlot(base)
        left = {n for (c, n) in keys if (c, n) not in stored}
        if any(benchmarks_reg.get(benchmarks[n].type).generates for n in left):
            generator = _make_generator(kind, bw, tok, base, device, paths, config.generation, work)
            backend = generator.name
        ctx = RunContext(model=base, tokenizer=tok, device=device, generator=generator, gen_dir=job_dir,
                         generator_name="")
        for n in left:
            benchmarks_reg.get(benchmarks[n].type).prepare(ctx, n, benchmarks[n])
    prov = _provenance(config, kind, device, backend)
    if load_s is not None:
        prov["base_load_s"] = round(load_s, 3)
    prov["base_weights"] = bw.record()
    prov["result_store"] = str(store.root)
    result["provenance"] = prov

    progress = TaskProgress(job_dir, sum(1 for k in keys if k not in stored))
    label = config.target.job or (config.target.name if kind == "external" else None) or kind
    for c in ckpts:
        _check_stop(stop, job_dir, result)
        t0 = time.time()
        gen_dir = job_dir / "generations" / c
        model, diff = None, None
        if c in todo:
            # 4. swap in this checkpoint's adapter and make sure it is really applied
            model = base
            if adapters:
                model = slot.swap(c, paths[c])
                diff = adapter_guard(model, tok, paths[c], device)
            if generator is not None:
                generator.set_model(model)
                generator.set_checkpoint(c, paths[c] if adapters else None)
            ctx.model, ctx.gen_dir = model, gen_dir
            ctx.generator_name = f"{config.model.name}/{label}/{c}"
        ckpt_prov = {"path": str(paths[c]), "adapter_sha256": shas[c], "guard_max_logit_diff": diff,
                     "generation_backend": backend}
        # 5. every benchmark: stored, or computed now (and stored)
        entries: dict[str, dict] = {}
        last, computed_at = None, None
        for name, b in benchmarks.items():
            if (c, name) not in keys:  # e.g. a judged benchmark at the final checkpoint only
                continue
            bench = benchmarks_reg.get(b.type)
            key, material = keys[(c, name)]
            if (c, name) in stored:
                last = stored[(c, name)]
                entries[name] = _reuse(store, last, bench, name, gen_dir, job_dir)
                continue
            _check_stop(stop, job_dir, result)
            progress.start(c, name)
            entry, rows = bench.run(ctx, name, b)
            rows_path = None
            if rows is not None:
                rows_path = gen_dir / f"{name}.jsonl"
                _write_jsonl(rows_path, rows)
                bench.write_outputs(gen_dir, name, rows)
            done_at = computed_at = time.time()
            last = StoredResult(key=key, stage="eval", material=material, job=job_dir.name, benchmark=name,
                                checkpoint=c, entry=entry, checkpoint_provenance=dict(
                                    ckpt_prov, seconds=round(done_at - t0, 3), evaluated_at=done_at),
                                created_at=done_at)
            store.put(last, rows_path)
            entries[name] = dict(entry, result_key=key)
            if rows_path is not None:
                entries[name]["generations"] = str(rows_path.relative_to(job_dir))
            progress.done(len(rows) if rows is not None else 0)
        # 6. one checkpoint done: record it
        result["checkpoints"][c] = entries
        if c in todo or last is None:
            prov["checkpoints"][c] = dict(ckpt_prov, seconds=round(time.time() - t0, 3),
                                          evaluated_at=computed_at or time.time())
            if c in getattr(generator, "agreement", {}):  # vLLM's agreement with HF here (CheckedVLLM)
                prov["checkpoints"][c]["vllm_agreement"] = generator.agreement[c]
        else:  # every benchmark here was stored: when and how it was evaluated then
            prov["checkpoints"][c] = dict(last.checkpoint_provenance, reused=True)
        atomic_write_json(job_dir / jobfiles.EVAL, result)
    atomic_write_json(job_dir / jobfiles.EVAL, result)
    shutil.rmtree(work, ignore_errors=True)
