"""The eval stage: one base load, every checkpoint's adapter swapped in, every benchmark run on each.

Recipe (config: docs/contract.md "eval"; outputs: docs/evaluation.md):
  1. resolve the target: `<sweep>/jobs/<target.job>/`; checkpoint N -> checkpoints/step-N/,
     "final" -> adapter/; target.kind "merged" -> model/ (a full model, no adapter, "final" only)
  2. skip checkpoints already in eval.json with the same adapter checksum (a requeued job resumes)
  3. load the tokenizer (with the model family's template) and the target's base weights once
     (jobs.base_weights, the function the merge job uses too: a QLoRA target gets its 4-bit base
     dequantized exactly as training used it, a LoRA target the base in `model.dtype`)
  4. per checkpoint: load its adapter beside the previous one, switch to it, drop the previous;
     check on a probe input that the adapter changes the logits (else fail: an adapter that is
     silently not applied would report the base model's scores as the run's)
  5. per benchmark that runs at this checkpoint (its `checkpoints`): lm-eval tasks
     (jobs.lm_eval_adapter), RealToxicityPrompts (generate + score), Red-Instruct and AlpacaEval
     (generate only; jobs.judge scores them on a CPU node)
  6. after each checkpoint, write eval.json atomically; generations under generations/<ckpt>/
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from alignkit.fsio import atomic_write_json, atomic_write_text, read_json
from jobs import base_weights, lm_eval_adapter
from jobs.base_weights import BaseWeights
from jobs.errors import JobFailure, Preempted
from jobs.safety import alpaca_eval, realtoxicity, red_instruct
from jobs.task_progress import TaskProgress
from jobs.templates import apply_template

BENCHMARK_TYPES = ("lm_eval", "realtoxicity", "red_instruct", "alpaca_eval")
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. Question: what is 2 plus 2? Answer:"
# The guard's tolerance, relative to the logits' scale: a LoRA whose B is zero, or whose target
# modules matched nothing, adds exactly 0, so any real adapter clears this by orders of magnitude.
GUARD_RTOL = 1e-6


def runs_at(benchmark: dict, ckpt: str) -> bool:
    """A benchmark runs at the checkpoints its config lists (`checkpoints`; absent: all of the job's)."""
    at = benchmark.get("checkpoints")
    return at is None or ckpt in {str(c) for c in at}


def checkpoint_dir(target_dir: Path, kind: str, ckpt: str) -> Path:
    if kind == "merged":
        if ckpt != "final":
            raise JobFailure(f"checkpoints: a merged target has only 'final', not {ckpt!r}")
        return target_dir / "model"
    return target_dir / "adapter" if ckpt == "final" else target_dir / "checkpoints" / f"step-{ckpt}"


def adapter_sha256(path: Path) -> str | None:
    f = path / "adapter_model.safetensors"
    if not f.is_file():
        return None
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _validate(config: dict) -> tuple[str, list[str], dict]:
    target = config.get("target") or {}
    kind = target.get("kind", "adapter")
    if kind not in ("adapter", "merged", "base") or (kind != "base" and not target.get("job")):
        raise JobFailure("config.json target: needs 'kind' adapter|merged (with 'job') or base")
    ckpts = config.get("checkpoints") or ["final"]
    if kind == "base" and [str(c) for c in ckpts] != ["final"]:
        raise JobFailure("config.json checkpoints: the untrained base model has only 'final'")
    benchmarks = config.get("benchmarks") or {}
    if not benchmarks:
        raise JobFailure("config.json benchmarks: empty; nothing to evaluate")
    for name, b in benchmarks.items():
        if not isinstance(b, dict) or b.get("type") not in BENCHMARK_TYPES:
            raise JobFailure(f"config.json benchmarks.{name}.type: {b.get('type') if isinstance(b, dict) else b!r} "
                             f"is not one of {', '.join(BENCHMARK_TYPES)}")
    return kind, [str(c) for c in ckpts], benchmarks


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(model_cfg: dict, path: str | Path, device: str) -> Any:
    """The plain base (or a full model at `path`) in `model.dtype`; see target_base for targets."""
    rev = model_cfg.get("revision") if str(path) == model_cfg.get("source") else None
    return base_weights.load(base_weights.of_model(dict(model_cfg, source=str(path), revision=rev)), device)


def target_base(kind: str, config: dict, job_dir: Path, paths: dict[str, Path]) -> BaseWeights:
    """The weights this eval job's target runs on, one per job (so per target, LoRA or QLoRA).

    adapter: the base its train job trained on (jobs.base_weights.of_train_job), which must be the
             model this eval config names; a target without a config.json (a hand-made layout,
             never a sweep's train job) is a LoRA adapter on the eval config's model.
    merged:  the merge's model/ in the dtype the merge wrote it (merge.json "dtype").
    base:    the untrained model in `model.dtype`.
    """
    model_cfg = config["model"]
    if kind == "merged":
        rec = paths["final"].parent / "merge.json"
        dtype = read_json(rec).get("dtype") if rec.is_file() else None
        return base_weights.of_model(dict(model_cfg, source=str(paths["final"]), revision=None,
                                          dtype=dtype or model_cfg.get("dtype")))
    if kind == "adapter":
        target_dir = job_dir.parent / config["target"]["job"]
        if (target_dir / "config.json").is_file():
            bw = base_weights.of_train_job(target_dir)
            chained = base_weights.merged_init(target_dir, read_json(target_dir / "config.json"))  # its own base
            if chained is None and (bw.source, bw.revision) != (str(model_cfg["source"]), model_cfg.get("revision") or None):
                raise JobFailure(f"config.json model: {model_cfg['source']!r} (revision {model_cfg.get('revision')!r}) "
                                 f"is not the base target {config['target']['job']} was trained on "
                                 f"({bw.source!r}, revision {bw.revision!r})")
            return bw
    return base_weights.of_model(model_cfg)


def load_tokenizer(model_cfg: dict, path: str | Path) -> Any:
    from transformers import AutoTokenizer

    rev = model_cfg.get("revision") if str(path) == model_cfg.get("source") else None
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

        name = f"ckpt_{ckpt}"
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
                    paths: dict[str, Path], backend: str, work: Path) -> Any:
    from jobs.generate import HFGenerator, VLLMGenerator, vllm_available

    if backend == "vllm" or (backend == "auto" and vllm_available()):
        ranks = [read_json(p / "adapter_config.json").get("r", 16) for p in paths.values()] if kind == "adapter" else [16]
        source, revision = bw.source, bw.revision
        if bw.quantization:  # vLLM must serve the dequantized weights, not the checkpoint's: write them
            model.save_pretrained(work)
            tok.save_pretrained(work)
            source, revision = str(work), None
        return VLLMGenerator(source, revision, bw.dtype, max(ranks), kind == "adapter", tok)
    if backend not in ("auto", "hf"):
        raise JobFailure(f"config.json generation.backend: {backend!r} is not auto, hf or vllm")
    return HFGenerator(model, tok, device)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _provenance(config: dict, kind: str, device: str, backend: str) -> dict:
    import peft
    import torch
    import transformers

    m = config["model"]
    return {
        "lm_eval_version": lm_eval_adapter.lm_eval_version(), "transformers_version": transformers.__version__,
        "peft_version": peft.__version__, "torch_version": torch.__version__,
        "base_model": {"source": m.get("source"), "revision": m.get("revision"), "dtype": m.get("dtype"),
                       "name": m.get("name"), "kind": m.get("kind")},
        "template": m.get("template"), "target": dict(config["target"], kind=kind),
        "device": device, "generation_backend": backend, "checkpoints": {},
    }


def _check_stop(stop: threading.Event, job_dir: Path, result: dict) -> None:
    if stop.is_set():
        atomic_write_json(job_dir / "eval.json", result)
        raise Preempted("eval: stopped between checkpoints; finished checkpoints are in eval.json")


def run(job_dir: Path, config: dict, stop: threading.Event) -> None:
    job_dir = Path(job_dir)
    kind, ckpts, benchmarks = _validate(config)
    model_cfg = config["model"]
    device = _device()
    backend_cfg = (config.get("generation") or {}).get("backend", "auto")

    # 1-2. resolve every checkpoint first (fail before loading anything) and find what is left to do
    if kind == "base":  # the untrained model itself (the paper's "Original" rows)
        paths = {"final": Path(model_cfg["source"])}
    else:
        target_dir = job_dir.parent / config["target"]["job"]
        paths = {c: checkpoint_dir(target_dir, kind, c) for c in ckpts}
    for c, p in paths.items():
        if kind != "base" and not p.is_dir():
            raise JobFailure(f"checkpoint {c}: {p} does not exist (has the target job {config['target']['job']} finished?)")
    shas = {c: adapter_sha256(p) if kind == "adapter" else None for c, p in paths.items()}
    for c, s in shas.items():
        if kind == "adapter" and s is None:
            raise JobFailure(f"checkpoint {c}: {paths[c]} has no adapter_model.safetensors")
    out_path = job_dir / "eval.json"
    result = read_json(out_path) if out_path.exists() else {"checkpoints": {}}
    done = result.get("provenance", {}).get("checkpoints", {})
    todo = [c for c in ckpts if not (c in result["checkpoints"] and done.get(c, {}).get("adapter_sha256") == shas[c])]
    for c in todo:
        result["checkpoints"].pop(c, None)

    bw = target_base(kind, config, job_dir, paths)
    generator = None
    work = job_dir / ".eval-base"  # the dequantized base, only when vLLM serves a QLoRA target
    if todo:
        # 3. one base load for all checkpoints
        t0 = time.time()
        tok = load_tokenizer(model_cfg, bw.source)
        base = base_weights.load(bw, device)
        load_s = time.time() - t0
        slot = AdapterSlot(base)
        need_gen = any(b["type"] != "lm_eval" for b in benchmarks.values())
        scorer = None
        if any(b["type"] == "realtoxicity" for b in benchmarks.values()):
            name, b = next((n, b) for n, b in benchmarks.items() if b["type"] == "realtoxicity")
            scorer = realtoxicity.ToxicityScorer(realtoxicity.classifier_source(b), device, f"benchmarks.{name}",
                                                 revision=b.get("classifier_revision"))
        task_managers: dict = {}
        backend = "none"
        if need_gen:
            generator = _make_generator(kind, bw, tok, base, device, paths, backend_cfg, work)
            backend = generator.name
        prov = _provenance(config, kind, device, backend)
        prov["checkpoints"] = {c: v for c, v in done.items() if c in result["checkpoints"]}
        prov["base_load_s"] = round(load_s, 3)
        prov["base_weights"] = bw.record()
        result["provenance"] = prov

    progress = TaskProgress(job_dir, sum(runs_at(b, c) for c in todo for b in benchmarks.values()))
    for c in todo:
        _check_stop(stop, job_dir, result)
        t0 = time.time()
        # 4. swap in this checkpoint's adapter and make sure it is really applied
        model, diff = base, None
        if kind == "adapter":
            model = slot.swap(c, paths[c])
            diff = adapter_guard(model, tok, paths[c], device)
        if generator is not None:
            if generator.name == "hf":
                generator.model = model
            generator.set_checkpoint(c, paths[c] if kind == "adapter" else None)
        # 5. every benchmark
        entries: dict[str, dict] = {}
        gen_dir = job_dir / "generations" / c
        for name, b in benchmarks.items():
            if not runs_at(b, c):  # e.g. a judged benchmark at the final checkpoint only
                continue
            _check_stop(stop, job_dir, result)
            progress.start(c, name)
            where = f"benchmarks.{name}"
            if b["type"] == "lm_eval":
                entries[name] = lm_eval_adapter.run_benchmark(model, tok, name, b, device=device,
                                                              task_managers=task_managers)
                progress.done()
                continue
            if b["type"] == "realtoxicity":
                entry, rows = realtoxicity.evaluate(generator, tok, scorer, b, where)
            elif b["type"] == "red_instruct":
                entry, rows = red_instruct.generate(generator, tok, b, where)
            else:
                gen_name = f"{model_cfg.get('name', 'model')}/{config['target'].get('job', 'base')}/{c}"
                entry, rows = alpaca_eval.generate(generator, tok, b, where, gen_name)
                atomic_write_json(gen_dir / f"{name}_model_outputs.json", rows)
            _write_jsonl(gen_dir / f"{name}.jsonl", rows)
            entry["generations"] = str((gen_dir / f"{name}.jsonl").relative_to(job_dir))
            entries[name] = entry
            progress.done(len(rows))
        # 6. one checkpoint done: record it
        result["checkpoints"][c] = entries
        result["provenance"]["checkpoints"][c] = {
            "path": str(paths[c]), "adapter_sha256": shas[c], "guard_max_logit_diff": diff,
            "seconds": round(time.time() - t0, 3), "evaluated_at": time.time()}
        atomic_write_json(out_path, result)
    if not todo:
        atomic_write_json(out_path, result)
    shutil.rmtree(work, ignore_errors=True)
