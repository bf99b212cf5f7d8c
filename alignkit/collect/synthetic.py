"""Write a synthetic study to disk in the on-disk contract's shape (docs/contract.md).

For collect's tests and benchmark, and to try `alignkit collect` without a cluster: a manifest
with train, eval and merge jobs, result files with made-up but seed-dependent numbers, tiny
checkpoint directories (with a fake optimizer state, for --prune), and DONE markers.
Nothing here runs a model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
from pathlib import Path
from typing import Any

BENCH_METRICS = {"mmlu": "acc", "bbh": "exact_match", "alpaca_eval": "win_rate", "realtoxicity": "toxicity_logit",
                 "red_instruct": "asr"}
BENCH_TYPES = {"mmlu": "lm_eval", "bbh": "lm_eval", "alpaca_eval": "alpaca_eval", "realtoxicity": "realtoxicity",
               "red_instruct": "red_instruct"}
INSTRUCT = ("mistral-7b-instruct", "vicuna-7b", "tiny-llama")   # model.kind "instruct"; others "pretrained"


def _id(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def _write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def write_study(root: str | os.PathLike, models=("mistral-7b", "mistral-7b-instruct"),
                datasets=("beavertails",), preferences=("harmless", "helpful"), methods=("sft", "dpo"),
                pefts=("qlora",), seeds=(0, 1), steps=(100, 200), benchmarks=tuple(BENCH_METRICS),
                merges: bool = True, merge_models: tuple[str, ...] | None = None,
                merge_datasets: tuple[str, ...] | None = None, max_steps: int = 300, checkpoint_files: bool = True,
                paper_names: bool = True, include: tuple[dict[str, Any], ...] = (),
                value: Any = None, failed: tuple[str, ...] = ()) -> dict[str, Any]:
    """Returns the manifest written. Eval checkpoints are `steps` + "final" (= `max_steps`). Merges (the
    paper's: Slerp and DARE of harmless+helpful per method, DARE of all four) for `merge_models` ×
    `merge_datasets` (default: all). `include`: extra grid blocks (e.g. a mixture preference), each a
    dict of axis → tuple of values. `value(bench, axes, step, rng, inputs)` replaces the made-up
    metric (`inputs`: the axes of a merge's inputs). Train jobs whose name contains one of `failed`
    end with an error.json; the jobs that depend on them never start."""
    root = Path(root)
    jobs: list[dict[str, Any]] = []
    paper = {"mistral-7b": "Mistral-7b", "mistral-7b-instruct": "Mistral-7b-Ins", "llama-7b": "LLaMA-1",
             "vicuna-7b": "Vicuna-v1.3"}
    bench_cfg = {b: {"type": BENCH_TYPES.get(b, "lm_eval"), "metric": BENCH_METRICS.get(b, "acc")} for b in benchmarks}
    checkpoints: list[Any] = [*steps, "final"]
    trains: dict[tuple, str] = {}
    blocks = [dict(model=models, dataset=datasets, preference=preferences, method=methods, peft=pefts, seed=seeds),
              *[{**dict(model=models, dataset=datasets, method=methods, peft=pefts, seed=seeds), **b} for b in include]]
    points = list(dict.fromkeys(p for b in blocks for p in itertools.product(
        b["model"], b["dataset"], b["preference"], b["method"], b["peft"], b["seed"])))
    for model, dataset, pref, method, peft, seed in points:
        mcfg = {"name": model, "source": f"org/{model}", "revision": "main", "template": "mistral",
                "kind": "instruct" if model in INSTRUCT else "pretrained", "dtype": "bfloat16"}
        if paper_names and model in paper:
            mcfg["paper_name"] = paper[model]
        axes = {"model": model, "dataset": dataset, "preference": pref, "method": method, "peft": peft, "seed": seed}
        cfg = {"stage": "train", "axes": axes, "model": mcfg, "dataset": {"name": dataset, "revision": "main"},
               "preference": pref.split("+"), "peft": {"name": peft}, "training": {"max_steps": max_steps},
               "seed": seed}
        tid = _id(cfg)
        trains[(model, dataset, pref, method, peft, seed)] = tid
        jobs.append({"id": tid, "name": "/".join(str(v) for v in axes.values()), "stage": "train",
                     "depends_on": [], "config": cfg, "resources": {"gpus": 1, "nodes": 1}})
        ecfg = {"stage": "eval", "axes": axes, "model": mcfg, "target": {"job": tid, "kind": "adapter"},
                "checkpoints": checkpoints, "benchmarks": bench_cfg}
        jobs.append({"id": _id(ecfg), "name": jobs[-1]["name"] + "/eval", "stage": "eval", "depends_on": [tid],
                     "config": ecfg, "resources": {"gpus": 1, "nodes": 1}})
    if merges:
        for model, dataset, peft, seed in itertools.product(merge_models or models, merge_datasets or datasets,
                                                            pefts, seeds):
            for name, method, combine in (("slerp", "slerp", ("sft",)), ("slerp", "slerp", ("dpo",)),
                                          ("dare", "dare_ties", ("sft",)), ("dare", "dare_ties", ("dpo",)),
                                          ("dare-sft+dpo", "dare_ties", ("sft", "dpo"))):
                if method == "slerp" and len(preferences) != 2:
                    continue
                ids = [trains[(model, dataset, p, m, peft, seed)] for m in combine for p in preferences
                       if (model, dataset, p, m, peft, seed) in trains]
                if len(ids) < 2:
                    continue
                axes = {"model": model, "dataset": dataset, "preference": "{" + ",".join(preferences) + "}",
                        "method": combine[0] if len(combine) == 1 else "{" + ",".join(combine) + "}",
                        "peft": peft, "seed": seed, "merge": name}
                mcfg = next(j["config"]["model"] for j in jobs if j["id"] == ids[0])
                cfg = {"stage": "merge", "axes": axes, "model": mcfg,
                       "merge": {"name": name, "method": method, "parameters": {"t": 0.5} if method == "slerp"
                                 else {"density": 0.5}}, "inputs": ids}
                mid = _id(cfg)
                jobs.append({"id": mid, "name": f"{name}:{model}/{dataset}/{axes['method']}/{peft}/s{seed}",
                             "stage": "merge", "depends_on": ids, "config": cfg, "resources": {"gpus": 0}})
                ecfg = {"stage": "eval", "axes": axes, "model": mcfg, "target": {"job": mid, "kind": "merged"},
                        "checkpoints": ["final"], "benchmarks": bench_cfg}
                jobs.append({"id": _id(ecfg), "name": jobs[-1]["name"] + "/eval", "stage": "eval",
                             "depends_on": [mid], "config": ecfg, "resources": {"gpus": 1, "nodes": 1}})
    manifest = {"format": 1, "sweep": root.name, "spec_path": "synthetic", "spec_text": "", "jobs": jobs}
    _write(root / "manifest.json", manifest)
    by_id = {j["id"]: j for j in jobs}
    dead = {j["id"] for j in jobs if j["stage"] == "train" and any(f in j["name"] for f in failed)}
    dead |= {j["id"] for j in jobs if set(j["depends_on"]) & dead}
    dead |= {j["id"] for j in jobs if set(j["depends_on"]) & dead}
    for job in jobs:
        if job["id"] in dead:
            _failed(root / "jobs" / job["id"], job, dead)
            continue
        target = by_id.get((job["config"].get("target") or {}).get("job"), {})
        inputs = [by_id[i]["config"]["axes"] for i in target.get("config", {}).get("inputs", [])] \
            if target.get("stage") == "merge" else []
        _results(root / "jobs" / job["id"], job, max_steps, checkpoint_files, value or _value, inputs)
    return manifest


def _failed(d: Path, job: dict[str, Any], dead: set[str]) -> None:
    """A train job that ran out of GPU memory; the jobs downstream of it never start (no directory)."""
    if job["stage"] == "train":
        _write(d / "config.json", job["config"])
        _write(d / "error.json", {"type": "OutOfMemoryError",
                                  "reason": "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 39.39 GiB total)"})


def _value(bench: str, axes: dict[str, Any], step: int, rng: random.Random, inputs: list[dict[str, Any]]) -> float:
    base = {"mmlu": 0.55, "bbh": 0.39, "alpaca_eval": 7.0, "realtoxicity": 1.5, "red_instruct": 30.0}.get(bench, 0.5)
    shift = 0.02 if axes.get("method") == "dpo" else 0.0
    return round(base * (1 + shift + 0.05 * step / 700) + rng.gauss(0, base * 0.01), 5)


def _curve(rng: random.Random, dpo: bool, max_steps: int) -> list[dict[str, Any]]:
    """A loss curve like the train job's (docs/training.md): an exponential decay plus noise;
    DPO adds reward accuracy and margin that rise with training."""
    out, start, floor = [], rng.uniform(0.65, 0.72) if dpo else rng.uniform(1.6, 2.2), rng.uniform(0.2, 0.4)
    every = max(1, max_steps // 35)
    for step in range(every, max_steps + 1, every):
        f = 1 - 2.718281828 ** (-4 * step / max_steps)
        p = {"step": step, "loss": round(start - (start - floor) * f + rng.gauss(0, 0.02), 4),
             "learning_rate": 5e-5, "grad_norm": round(rng.uniform(0.2, 1.5), 3)}
        if dpo:
            p["reward_accuracy"] = round(min(1.0, 0.5 + 0.45 * f + rng.gauss(0, 0.03)), 4)
            p["reward_margin"] = round(3.0 * f + rng.gauss(0, 0.1), 4)
        out.append(p)
    return out


def _results(d: Path, job: dict[str, Any], max_steps: int, checkpoint_files: bool, value: Any,
             inputs: list[dict[str, Any]]) -> None:
    cfg = job["config"]
    rng = random.Random(job["id"])
    _write(d / "config.json", cfg)
    if job["stage"] == "train":
        dpo = cfg["axes"]["method"] == "dpo"
        curve = _curve(rng, dpo, max_steps)
        _write(d / "train_metrics.json", {
            "loss_curve": curve, "first_loss": curve[0]["loss"], "final_loss": curve[-1]["loss"],
            "dpo": {"reward_accuracy": curve[-1]["reward_accuracy"], "reward_margin": curve[-1]["reward_margin"],
                    "first_reward_accuracy": curve[0]["reward_accuracy"]} if dpo else None,
            "train_loss": round(rng.uniform(0.3, 0.9), 4), "global_step": max_steps,
                                          "wall_s": rng.uniform(600, 5400), "tokens_per_s": rng.uniform(2e3, 4e3),
                                          "peak_mem_gb": rng.uniform(12, 30),
                                          "provenance": {"versions": {"torch": "2.13.0", "trl": "1.16.0"},
                                                         "dataset_revision": "abc123", "code_commit": "deadbeef"}})
        if checkpoint_files:
            for step in range(100, max_steps, 100):
                ck = d / "checkpoints" / f"step-{step}"
                ck.mkdir(parents=True, exist_ok=True)
                (ck / "adapter_model.safetensors").write_bytes(b"\0" * 256)
                (ck / "adapter_config.json").write_text("{}")
                (ck / "optimizer.pt").write_bytes(b"\0" * 512)
            (d / "adapter").mkdir(exist_ok=True)
            (d / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 256)
            (d / "adapter" / "adapter_config.json").write_text("{}")
    elif job["stage"] == "merge":
        (d / "model").mkdir(parents=True, exist_ok=True)
        (d / "model" / "model.safetensors").write_bytes(b"\0" * 1024)
        _write(d / "merge.json", {"method": cfg["merge"]["method"], "inputs": [{"job": i} for i in cfg["inputs"]],
                                  "timings": {"total_s": rng.uniform(60, 600)}})
    else:
        out: dict[str, Any] = {}
        for ck in cfg["checkpoints"]:
            step = max_steps if ck == "final" else int(ck)
            out[str(ck)] = {}
            for bench, b in cfg["benchmarks"].items():
                v = value(bench, cfg["axes"], step, rng, inputs)
                out[str(ck)][bench] = {"metric": b["metric"], b["metric"]: v,
                                       f"{b['metric']}_stderr": round(abs(v) * 0.01, 5), "n": 100}
                if b["type"] == "realtoxicity":
                    out[str(ck)][bench]["higher_is_better"] = True
        _write(d / "eval.json", {"checkpoints": out, "provenance": {"versions": {"lm_eval": "0.4.13"}}})
    (d / "DONE").write_text("1\n")
