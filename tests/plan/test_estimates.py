"""plan's cost estimates (alignkit/plan/estimates.py): benchmark work from published task sizes, eval
GPU-hours from the rate table, CPU-hours, and the wall-clock at the array throttles."""

from __future__ import annotations

import json
import subprocess
import sys

from alignkit.contract.common import ModelConfig
from alignkit.contract.eval import EvalConfig, Target
from alignkit.plan.compiler import load_plan
from alignkit.plugins.benchmarks import config_class
from alignkit.plan.model import Job
from alignkit.plan.resources import Resources
from alignkit.plan.estimates import benchmark_work, estimate, load_rates, wall_clock
from tests.fixtures.train_configs import ROOT

B = config_class()  # a benchmark in a job config


def test_benchmark_work_from_published_sizes():
    # MMLU: 14,042 test questions x 4 choices (hendrycks/test); a limit applies per subject (57)
    assert benchmark_work(B(type="lm_eval", task="mmlu")) == {"kind": "loglikelihood", "requests": 56168,
                                                                   "tokens": 0}
    assert benchmark_work(B(type="lm_eval", task="mmlu", limit=10))["requests"] == 57 * 10 * 4
    # BBH: 6,511 examples (27 tasks), each up to 256 generated tokens
    assert benchmark_work(B(type="lm_eval", task="bbh_fewshot"))["tokens"] == 6511 * 256
    assert benchmark_work(B(type="lm_eval", task="smoke_mmlu")) is None  # unknown size: no guess
    assert benchmark_work(B(type="realtoxicity", num_prompts=1000, max_new_tokens=20))["tokens"] == 20000
    assert benchmark_work(B(type="red_instruct", num_prompts=None, max_new_tokens=500), items=200)["tokens"] \
        == 100000


def test_full_study_eval_hours_add_up_from_the_rates(tmp_path):
    plan = load_plan(ROOT / "sweeps" / "full.yaml", output_dir=tmp_path / "full")
    s = plan.summary()
    e = s["estimates"]
    rates = load_rates()
    assert e["eval_rates"]["measured"] is rates["measured"]
    # MMLU at one checkpoint: 56,168 requests at the table's loglikelihood rate
    mmlu = e["eval_benchmarks"]["mmlu"]
    assert mmlu["gpu_s_per_checkpoint"] == round(56168 / rates["rates"]["loglikelihood"]["requests_per_s"], 1)
    # 360 trained runs x 7 checkpoints, 100 merges and 4 base models at "final"
    assert mmlu["checkpoint_evals"] == 360 * 7 + 100 + 4
    total = sum(b["gpu_hours"] for b in e["eval_benchmarks"].values())
    assert abs(total - s["gpu_hours"]["eval"]) < 0.5 and e["eval_jobs_on_stage_estimate"] == 0
    # merges and judges run on CPUs: 100 merges x 8 CPUs x 20 min; 464 judge jobs x 2 CPUs x 30 min
    assert e["stages"]["merge"]["cpu_hours"] == round(100 * 8 * 20 / 60, 1)
    assert e["stages"]["judge"]["cpu_hours"] == 464.0
    assert s["gpu_hours"]["merge"] == 0 and s["gpu_hours"]["judge"] == 0


def job(jid: str, stage: str, deps: tuple = (), throttle: int = 2, minutes: float = 60) -> Job:
    r = Resources(gpus=1, cpus=1, mem_gb=1, time_min=int(minutes), nodes=1, partition=None,
                  array_parallelism=throttle, estimate_min=minutes)
    # an eval benchmark of unknown size: the job keeps the stage's estimate
    cfg = EvalConfig(stage="eval", model=ModelConfig(source="m", name="m"), target=Target(),
                     benchmarks={"x": B(type="lm_eval", task="smoke_mmlu")}) if stage == "eval" else None
    return Job(id=jid, name=jid, stage=stage, depends_on=deps, config=cfg, resources=r)


def test_wall_clock_counts_waves_along_the_longest_path():
    trains = [job(f"t{i}", "train", throttle=2, minutes=60) for i in range(5)]  # 3 waves of 1 h
    evals = [job(f"e{i}", "eval", (f"t{i}",), throttle=5, minutes=30) for i in range(5)]  # 1 wave of 0.5 h
    merge = job("m", "merge", ("t0", "t1"), throttle=1, minutes=6)
    jobs = trains + evals + [merge]
    keys = {j.id: (j.stage,) for j in jobs}
    w = wall_clock(jobs, keys, [j.resources.estimate_min / 60 for j in jobs])
    assert w["stage_done_at_hours"] == {"train": 3.0, "eval": 3.5, "merge": 3.1}
    assert w["hours"] == 3.5
    e = estimate(jobs, keys)
    assert e["stages"]["train"]["gpu_hours"] == 5.0 and e["stages"]["eval"]["gpu_hours"] == 2.5
    assert e["eval_jobs_on_stage_estimate"] == 5 and e["wall_clock"]["hours"] == 3.5


def test_plan_text_says_the_eval_estimate_is_a_guess_until_measured(tmp_path):
    out = subprocess.run([sys.executable, "-m", "alignkit", "plan", str(ROOT / "sweeps" / "full.yaml"),
                          "-o", str(tmp_path / "full")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rates = json.loads((ROOT / "alignkit" / "plan" / "eval_rates.json").read_text())
    if rates["measured"]:
        assert f"rates measured on {rates['device']}" in out.stdout
    else:
        assert "a GUESS (no GPU has measured the rates yet)" in out.stdout
    assert "mmlu" in out.stdout and "expected wall-clock at the array throttles" in out.stdout
    assert "CPU-hours (jobs without a GPU): judge 464.0, merge 266.7" in out.stdout
    assert "DPO reference log-probs: 36 shared passes for 180 runs" in out.stdout
