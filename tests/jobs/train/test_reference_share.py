"""Reference log-probs computed once per study (issue 20 item 3): which runs share a pass
(alignkit/contract/reference.py), the store's behaviour under concurrent and killed jobs (jobs/train/reference.py),
and a tiny local DPO study of 2 betas x 3 seeds whose runs reuse one pass and train exactly as a
run that computed its own."""

from __future__ import annotations

import copy
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from alignkit.contract.reference import pass_key, shareable
from tests.fixtures.train_configs import ROOT, train_config, typed
from tests.fixtures.written import written

STUDY = """
name: ref-share
models:
  tiny-llama: {{source: {root}/assets/tiny-llama, template: chat_template, kind: instruct, dtype: float32}}
datasets:
  beavertails: {{format: beavertails, source: {root}/assets/smoke-data/pku-saferlhf, split: train}}
methods:
  dpo:
    type: dpo
    learning_rate: 5.0e-3
    lr_scheduler: constant
    batch_size: 4
    per_device_batch_size: 4
    optimizer: adamw_torch
    beta: 0.1
    max_length: 64
    max_prompt_length: 32
    lora: {{r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}}
peft:
  lora: {{quantization: null}}
  qlora:
    quantization: {{bits: 4, quant_type: nf4, double_quant: true, compute_dtype: float32, storage_dtype: float32}}
training: {{max_steps: 2, save_steps: 2, gradient_checkpointing: false, logging_steps: 1}}
grid:
  model: [tiny-llama]
  dataset: [beavertails]
  preference: [harmless]
  method: [dpo]
  peft: {peft}
  seed: [0, 1, 2]
  method.beta: [0.1, 0.5]
"""


def study_plan(tmp_path: Path, peft: str = "[lora, qlora]"):
    from alignkit.plan.compiler import load_plan

    spec = tmp_path / "study.yaml"
    spec.write_text(STUDY.format(root=ROOT, peft=peft))
    return load_plan(spec, output_dir=tmp_path / "sweep")


def test_full_study_needs_36_passes_for_its_180_dpo_runs(tmp_path):
    from alignkit.plan.compiler import load_plan

    s = load_plan(ROOT / "sweeps" / "full.yaml", output_dir=tmp_path / "full").summary()
    assert (s["reference_passes"], s["reference_pass_runs"], s["reference_inline_runs"]) == (36, 180, 0)


def test_two_betas_three_seeds_one_pass_per_model_quantization_and_data(tmp_path):
    plan = study_plan(tmp_path)
    s = plan.summary()
    assert s["training_runs"] == 12
    assert (s["reference_passes"], s["reference_pass_runs"]) == (2, 12)  # LoRA's base and QLoRA's
    keys = {pass_key(j.config) for j in plan.jobs if j.stage == "train"}
    by_peft = {written(j)["axes"]["peft"]: pass_key(j.config) for j in plan.jobs if j.stage == "train"}
    assert len(keys) == 2 and by_peft["lora"] != by_peft["qlora"]


def test_what_changes_the_pass_and_what_does_not():
    base = train_config("dpo", "qlora")
    key = pass_key(typed(base))
    same = {"seed": 3, "beta": 0.5, "learning_rate": 1e-4, "loss_type": "ipo", "max_steps": 9}
    for k, v in same.items():
        cfg = train_config("dpo", "qlora", **{k: v})
        assert pass_key(typed(cfg)) == key, k
    differs = []
    for change in (lambda c: c["model"].update(dtype="float32"), lambda c: c["peft"].update(quantization=None),
                   lambda c: c.update(preference=["helpful"]), lambda c: c["method"].update(max_length=80),
                   lambda c: c["method"].update(max_prompt_length=40), lambda c: c["dataset"].update(limit=5),
                   lambda c: c["model"].update(template="plain")):
        cfg = copy.deepcopy(base)
        change(cfg)
        differs.append(pass_key(typed(cfg)))
    assert key not in differs and len(set(differs)) == len(differs)
    # the job keys by the dtypes it uses: a CPU run (float32) never reads a GPU run's (bfloat16) pass
    assert pass_key(typed(base), model_dtype="float32") != key
    assert shareable(typed(train_config("sft"))) and shareable(typed(train_config("dpo", deepspeed_stage=2)))
    chained = typed({**base, "init": {"job": "x", "mode": "continue"}})
    assert shareable(typed(base), gpus=2) and shareable(chained) and shareable(typed(base)) is None


# ---- the store ------------------------------------------------------------------------------------

def job_dirs(tmp_path: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        d = tmp_path / "sweep" / "jobs" / f"job{i}"
        d.mkdir(parents=True)
        out.append(d)
    return out


def hexes(n: int, salt: str = "") -> list[str]:
    import hashlib

    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest()[:24] for i in range(n)]


def value(h: str) -> list[float]:
    return [-(int(h[:6], 16) % 997) / 7, -(int(h[6:12], 16) % 991) / 3]


def test_concurrent_jobs_split_the_pass_and_all_read_the_same_values(tmp_path):
    from jobs.train.reference import SHARDS, SharedReference

    computed: list[str] = []
    lock = threading.Lock()
    hashes = hexes(200)

    def compute(todo):
        time.sleep(0.05)  # the others arrive while it computes
        with lock:
            computed.extend(todo)
        return [value(h) for h in todo]

    refs = [SharedReference(d, "k", poll_s=0.02) for d in job_dirs(tmp_path, 5)]
    got: dict[int, dict] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, refs[i].table("train", hashes[::-1], compute)))
               for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(computed) == sorted(hashes)  # every row computed once, by one of the five
    assert all(got[i] == {h: value(h) for h in hashes} for i in range(5))
    assert sum(r.shards_computed_here for r in refs) == SHARDS
    assert sum(r.status == "computed" for r in refs) >= 2  # the pass was split, not computed by one
    store = tmp_path / "sweep" / "reference" / "k"
    assert sorted(p.name for p in store.iterdir()) == [f"train.{k:02d}.json" for k in range(SHARDS)]  # no lock left
    later = SharedReference(job_dirs(tmp_path / "later", 1)[0], "k")
    later.dir = store  # a resubmitted or later job of the same study
    assert later.table("train", hashes, compute) == got[0] and later.status == "reused"
    assert len(computed) == len(hashes)


def test_a_killed_holder_is_taken_over_and_a_failing_one_releases(tmp_path):
    from jobs.train.reference import SHARDS, SharedReference

    a, b = job_dirs(tmp_path, 2)
    store = tmp_path / "sweep" / "reference" / "k"
    store.mkdir(parents=True)
    h = hexes(1)[0]
    k = int(h, 16) % SHARDS
    lock = store / f"train.{k:02d}.lock"
    lock.write_text("{}")  # left by a holder killed with SIGKILL: its heartbeat stopped
    old = time.time() - 3600
    os.utime(lock, (old, old))
    ref = SharedReference(a, "k", poll_s=0.01, stale_s=60)
    assert ref.table("train", [h], lambda todo: [[1.0, 2.0]]) == {h: [1.0, 2.0]}
    assert ref.status == "computed" and not lock.exists()

    live = store / f"eval.{k:02d}.lock"
    live.write_text("{}")  # a live holder (fresh mtime) is waited for, not broken
    waiter = SharedReference(b, "k", poll_s=0.01, stale_s=60)
    t = threading.Thread(target=lambda: waiter.table("eval", [h], lambda todo: [[5.0, 6.0]]))
    t.start()
    time.sleep(0.2)
    assert t.is_alive() and live.exists()
    live.unlink()  # the holder failed and removed its lock: the waiter computes the shard
    t.join(5)
    assert waiter.status == "computed"

    def boom(todo):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        SharedReference(a, "k2", poll_s=0.01).table("train", [h], boom)
    assert not list((tmp_path / "sweep" / "reference" / "k2").glob("*.lock"))


def test_rows_the_pass_lacks_are_computed_by_the_run(tmp_path):
    from jobs.train.reference import SHARDS, SharedReference

    a, b = job_dirs(tmp_path, 2)
    p, q = hexes(2)
    r = next(h for h in hexes(500, "r") if int(h, 16) % SHARDS == int(q, 16) % SHARDS)  # in q's shard
    SharedReference(a, "k").table("train", [p, q], lambda todo: [[1.0, 1.0]] * len(todo))
    ref = SharedReference(b, "k")
    rows = ref.table("train", [q, r], lambda todo: [[2.0, 2.0]] * len(todo))
    assert rows[q] == [1.0, 1.0] and rows[r] == [2.0, 2.0]
    assert ref.status == "reused" and ref.rows_computed_here == 1


# ---- a tiny local study ---------------------------------------------------------------------------

def run_train_job(job_dir: Path) -> None:
    from jobs.entry import run_job

    saved = dict(os.environ)
    try:
        run_job(job_dir)
    finally:  # the job exports RANK/WORLD_SIZE/MASTER_*: the next one starts clean
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.slow
@pytest.mark.usefixtures("_restore_process_state")
def test_tiny_study_reuses_one_pass_and_trains_as_a_run_computing_its_own(tmp_path):
    from safetensors.torch import load_file

    plan = study_plan(tmp_path, peft="[lora]")
    trains = sorted((j for j in plan.jobs if j.stage == "train"),
                    key=lambda j: (written(j)["axes"]["seed"], written(j)["method"]["beta"]))
    assert len(trains) == 6 and plan.summary()["reference_passes"] == 1
    metrics = {}
    for job in trains:
        d = tmp_path / "sweep" / "jobs" / job.id
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps(written(job)))
        run_train_job(d)
        metrics[job.id] = json.loads((d / "train_metrics.json").read_text())
    status = [metrics[j.id]["reference"] for j in trains]
    assert status == ["computed"] + ["reused"] * 5, status
    assert len({metrics[j.id]["reference_pass"]["key"] for j in trains}) == 1

    # the last run (seed 2, beta 0.5) again, alone in a new sweep: it computes its own pass
    last = trains[-1]
    alone = tmp_path / "alone" / "jobs" / last.id
    alone.mkdir(parents=True)
    (alone / "config.json").write_text(json.dumps(written(last)))
    run_train_job(alone)
    own = json.loads((alone / "train_metrics.json").read_text())
    assert own["reference"] == "computed"
    shared = metrics[last.id]
    la, lb = [p["loss"] for p in shared["loss_curve"]], [p["loss"] for p in own["loss_curve"]]
    assert max(abs(x - y) / abs(y) for x, y in zip(la, lb, strict=True)) <= 1e-6  # the resume tests' tolerance
    ta = load_file(tmp_path / "sweep" / "jobs" / last.id / "adapter" / "adapter_model.safetensors")
    tb = load_file(alone / "adapter" / "adapter_model.safetensors")
    assert ta.keys() == tb.keys()
    for k in ta:
        assert (ta[k] - tb[k]).abs().max().item() <= 1e-6 * max(tb[k].abs().max().item(), 1e-12), k
    # and as the same run with the reference computed inline in every step (a job outside a sweep:
    # what every DPO run did before): equal within the same 1e-6 (0.0 on this CPU)
    inline = tmp_path / "inline" / last.id
    inline.mkdir(parents=True)
    (inline / "config.json").write_text(json.dumps(written(last)))
    run_train_job(inline)
    m = json.loads((inline / "train_metrics.json").read_text())
    assert m["reference"] == "inline" and m["reference_pass"] is None
    li = [p["loss"] for p in m["loss_curve"]]
    assert max(abs(x - y) / abs(y) for x, y in zip(la, li, strict=True)) <= 1e-6
    shutil.rmtree(tmp_path / "sweep" / "jobs")  # the adapters are large-ish; the store is kept for debugging
