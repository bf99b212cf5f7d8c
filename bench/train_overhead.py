"""What the alignkit training job costs over a plain TRL script doing the same steps (CPU, tiny model).

    OMP_NUM_THREADS=2 .venv/bin/python bench/train_overhead.py [--steps 40] [--repeats 3]

Both sides train the same compiled smoke configs (sweeps/smoke.yaml: SFT and DPO; with
--methods also sweeps/tiny/methods.yaml's IPO, KTO, ORPO and SimPO; LoRA, tiny Llama, smoke data) for the same number of steps with the same hyperparameters and checkpoint
interval, each in a fresh process, alternating, in the same run. The plain script is what a user
would write: load rows, tokenizer, model, LoRA config, the method's TRL trainer (SFTTrainer,
DPOTrainer, KTOTrainer, trl.experimental's ORPOTrainer/CPOTrainer) on the raw rows, train, save. The
job adds per-step logging, token counting, the stop-flag check, progress.json, adapter exports,
checkpoint markers and train_metrics.json. Printed: median wall time per side (whole process, and
the training loop alone) and their ratio (alignkit / plain; 1.00 = no overhead), from the fastest
and the median of the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plain_trl(config_path: str, out: str) -> None:
    """The baseline: a plain TRL script with the config's hyperparameters (run in its own process)."""
    t0 = time.time()
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from jobs.data import load_preferences, sft_rows
    from tests.fixtures.train_configs import typed_dataset

    cfg = json.loads(Path(config_path).read_text())
    m, t = cfg["method"], cfg["training"]
    rows = load_preferences(typed_dataset(cfg["dataset"]), cfg["preference"], cfg["seed"])
    tok = AutoTokenizer.from_pretrained(cfg["model"]["source"])
    model = AutoModelForCausalLM.from_pretrained(cfg["model"]["source"])
    lora = LoraConfig(r=m["lora"]["r"], lora_alpha=m["lora"]["alpha"], lora_dropout=m["lora"]["dropout"],
                      target_modules=m["lora"]["target_modules"], task_type="CAUSAL_LM")
    common = dict(output_dir=out, max_steps=t["max_steps"], per_device_train_batch_size=m["per_device_batch_size"],
                  gradient_accumulation_steps=m["batch_size"] // m["per_device_batch_size"],
                  learning_rate=m["learning_rate"], lr_scheduler_type=m["lr_scheduler"],
                  max_grad_norm=m["max_grad_norm"], weight_decay=m["weight_decay"], optim="adamw_torch",
                  max_length=m["max_length"], seed=cfg["seed"], bf16=False, fp16=False,
                  gradient_checkpointing=t["gradient_checkpointing"], logging_steps=t["logging_steps"],
                  save_steps=t["save_steps"], report_to="none", disable_tqdm=True)
    if m["type"] == "sft":
        trainer = SFTTrainer(model=model, args=SFTConfig(**common, assistant_only_loss=True),
                             train_dataset=sft_rows(rows), processing_class=tok, peft_config=lora)
    elif m["type"] == "dpo":
        trainer = DPOTrainer(model=model, args=DPOConfig(**common, beta=m["beta"],
                                                         loss_type=[m.get("loss_type", "sigmoid")]),
                             train_dataset=rows, processing_class=tok, peft_config=lora)
    elif m["type"] == "kto":  # TRL unpairs the pairs itself
        from trl import KTOConfig, KTOTrainer

        trainer = KTOTrainer(model=model, args=KTOConfig(**common, beta=m["beta"]), train_dataset=rows,
                             processing_class=tok, peft_config=lora)
    elif m["type"] == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        trainer = ORPOTrainer(model=model, args=ORPOConfig(**common, beta=m["beta"]), train_dataset=rows,
                              processing_class=tok, peft_config=lora)
    else:
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        trainer = CPOTrainer(model=model, args=CPOConfig(**common, beta=m["beta"], loss_type=m["loss_type"],
                                                         simpo_gamma=m["simpo_gamma"], cpo_alpha=m["cpo_alpha"]),
                             train_dataset=rows, processing_class=tok, peft_config=lora)
    t1 = time.time()
    trainer.train()
    t2 = time.time()
    trainer.save_model(os.path.join(out, "adapter"))
    print(json.dumps({"train_s": t2 - t1, "inner_wall_s": time.time() - t0}))


def _env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT),
                OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), TQDM_DISABLE="1")


def run_alignkit(config: dict, work: Path) -> tuple[float, float]:
    job = Path(tempfile.mkdtemp(dir=work, prefix="job-"))
    (job / "config.json").write_text(json.dumps(config))
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "jobs.entry", str(job)], cwd=ROOT, env=_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - t0
    return wall, json.loads((job / "train_metrics.json").read_text())["train_wall_s"]


def run_plain(config: dict, work: Path) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(dir=work, prefix="plain-"))
    (out / "config.json").write_text(json.dumps(config))
    t0 = time.time()
    res = subprocess.run([sys.executable, __file__, "--plain", str(out / "config.json"), str(out)], cwd=ROOT,
                         env=_env(), check=True, capture_output=True, text=True)
    wall = time.time() - t0
    return wall, json.loads(res.stdout.strip().splitlines()[-1])["train_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default="sft,dpo",
                    help="comma-separated: sft, dpo (sweeps/smoke.yaml), ipo, kto, orpo, simpo (sweeps/tiny/methods.yaml)")
    ap.add_argument("--plain", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.plain:
        return plain_trl(*a.plain)

    sys.path.insert(0, str(ROOT))
    from alignkit.contract.serial import to_json
    from alignkit.plan.compiler import load_plan

    with tempfile.TemporaryDirectory(prefix="ak-bench-") as tmp:
        work = Path(tmp)
        plans = {"sft": "smoke.yaml", "dpo": "smoke.yaml", "ipo": "tiny/methods.yaml", "kto": "tiny/methods.yaml",
                 "orpo": "tiny/methods.yaml", "simpo": "tiny/methods.yaml"}
        print(f"steps={a.steps} repeats={a.repeats} OMP_NUM_THREADS={_env()['OMP_NUM_THREADS']}")
        for kind in a.methods.split(","):
            plan = load_plan(ROOT / "sweeps" / plans[kind], output_dir=work / "runs")
            job = next(j for j in plan.jobs if j.stage == "train" and j.config.axes["method"] == kind
                       and j.config.axes["peft"] == "lora")
            config = to_json(job.config)  # as config.json holds it
            config["training"].update(max_steps=a.steps, save_steps=max(1, a.steps // 2))
            ak, pl = [], []
            for i in range(a.repeats):  # alternate which side goes first, to share the machine's drift
                order = (("ak", run_alignkit), ("plain", run_plain)) if i % 2 == 0 else \
                        (("plain", run_plain), ("ak", run_alignkit))
                for name, fn in order:
                    (ak if name == "ak" else pl).append(fn(config, work))
            # On a shared machine the fastest run is the least disturbed one: report min and median.
            for stat in (min, statistics.median):
                ak_wall, ak_train = stat(w for w, _ in ak), stat(t for _, t in ak)
                pl_wall, pl_train = stat(w for w, _ in pl), stat(t for _, t in pl)
                print(f"{kind}-lora {stat.__name__:6s} process wall: alignkit {ak_wall:6.2f} s  plain TRL "
                      f"{pl_wall:6.2f} s  ratio {ak_wall / pl_wall:.3f}  |  train loop: alignkit {ak_train:6.2f} s"
                      f"  plain TRL {pl_train:6.2f} s  ratio {ak_train / pl_train:.3f}", flush=True)


if __name__ == "__main__":
    main()
