"""The training job's speed options, each against the job's default, in the same run (CPU, tiny model).

    OMP_NUM_THREADS=1 .venv/bin/python bench/train_options.py [--steps 30] [--repeats 2]

Options (config.training): gradient_checkpointing, packing (SFT), precompute_ref_log_probs (DPO).
Liger kernels need a GPU (bench/gpu_qlora.py covers that side). Each variant runs the real job
(`jobs.entry`) in a fresh process on the compiled smoke config (LoRA, tiny Llama); printed: the
fastest repeat's samples/s, non-padding tokens/s and peak RSS, and their ratios to the baseline.
On the tiny model these show what each option costs in itself (extra forward passes, packing
bookkeeping); the memory side of checkpointing only shows on a real model (bench/gpu_qlora.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "sft": [("baseline", {}), ("gradient_checkpointing", {"gradient_checkpointing": True}),
            ("packing", {"packing": True})],
    "dpo": [("baseline", {}), ("gradient_checkpointing", {"gradient_checkpointing": True}),
            ("precompute_ref_log_probs", {"precompute_ref_log_probs": True})],
}


def run_job(config: dict, work: Path) -> dict:
    job = Path(tempfile.mkdtemp(dir=work, prefix="job-"))
    (job / "config.json").write_text(json.dumps(config))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    subprocess.run([sys.executable, "-m", "jobs.entry", str(job)], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((job / "train_metrics.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from alignkit.contract.serial import to_json
    from alignkit.plan.compiler import load_plan

    with tempfile.TemporaryDirectory(prefix="ak-options-") as tmp:
        work = Path(tmp)
        plan = load_plan(ROOT / "sweeps" / "smoke.yaml", output_dir=work / "runs")
        print(f"steps={a.steps} repeats={a.repeats} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}")
        for kind, variants in VARIANTS.items():
            job = next(j for j in plan.jobs if j.stage == "train" and j.config.axes["method"] == kind
                       and j.config.axes["peft"] == "lora")
            base_cfg = to_json(job.config)  # as config.json holds it
            base_cfg["training"].update(max_steps=a.steps, save_steps=a.steps, gradient_checkpointing=False,
                                        packing=False, precompute_ref_log_probs=False)
            best: dict[str, dict] = {}
            for _ in range(a.repeats):  # round-robin so drift on a shared machine hits every variant
                for name, change in variants:
                    cfg = json.loads(json.dumps(base_cfg))
                    cfg["training"].update(change)
                    t0 = time.time()
                    m = run_job(cfg, work)
                    m["process_s"] = time.time() - t0
                    if name not in best or m["train_wall_s"] < best[name]["train_wall_s"]:
                        best[name] = m
            base = best["baseline"]
            for name, _ in variants:
                m = best[name]
                print(f"{kind} {name:25s} train {m['train_wall_s']:6.2f} s  {m['samples_per_s']:7.2f} samples/s "
                      f"(x{m['samples_per_s'] / base['samples_per_s']:.2f})  {m['tokens_per_s']:8.1f} tok/s "
                      f"(x{m['tokens_per_s'] / base['tokens_per_s']:.2f})  peak RSS "
                      f"{m['peak_memory_bytes'] / 2**20:6.0f} MiB (x{m['peak_memory_bytes'] / base['peak_memory_bytes']:.2f})"
                      f"  final loss {m['final_loss']:.4f}", flush=True)


if __name__ == "__main__":
    main()
