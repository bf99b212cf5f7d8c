"""The training job on the tiny model and the smoke data: SFT and DPO, LoRA and QLoRA, one process
and two processes under DeepSpeed ZeRO-2, interruption and resume, and the one-line failures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fixtures.train_configs import StopAtStep, ROOT, train_config, typed
from tests.fixtures.written import written

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _every_test_restores_process_state(_restore_process_state):
    # every test here may call run() in this interpreter (tests/jobs/conftest.py)
    yield


def _run(job_dir: Path, config: dict, stop: threading.Event | None = None) -> dict:
    from jobs.train import stage as train

    job_dir.mkdir(parents=True, exist_ok=True)
    train.run(job_dir, typed(config), stop or threading.Event())
    return json.loads((job_dir / "train_metrics.json").read_text())


def documented_fields() -> set[str]:
    """The train_metrics.json fields listed in docs/training.md's table."""
    text = (ROOT / "docs" / "training.md").read_text()
    section = text.split("## train_metrics.json", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))


def _adapter(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "adapter_model.safetensors")


@pytest.mark.parametrize("kind,peft", [("sft", "lora"), ("sft", "qlora"), ("dpo", "lora"), ("dpo", "qlora")])
def test_single_process_trains_and_writes_the_contract(tmp_path, kind, peft):
    job = tmp_path / "job"
    m = _run(job, train_config(kind, peft, max_steps=6, save_steps=3))

    assert documented_fields() <= set(m), f"undocumented gaps: {documented_fields() - set(m)}"
    assert m["steps"] == 6 and m["world_size"] == 1 and m["grad_accum"] == 2 and m["deepspeed_stage"] == 0
    assert [p["step"] for p in m["loss_curve"]] == [1, 2, 3, 4, 5, 6]
    assert m["final_loss"] < m["first_loss"], m["loss_curve"]
    if kind == "dpo":
        # The policy starts equal to the reference (accuracy 0: no pair has a positive margin yet).
        assert m["dpo"]["first_reward_accuracy"] < 0.5 <= m["dpo"]["reward_accuracy"]
        assert m["dpo"]["reward_margin"] > 0
    else:
        assert m["dpo"] is None
    assert m["tokens_per_s"] > 0 and m["samples_per_s"] > 0 and m["peak_memory_bytes"] > 0
    assert {s["key"] for s in m["substitutions"]} >= {"method.optimizer", "model.dtype"}  # CPU: recorded
    assert m["packages"]["trl"] == "1.16.0" and m["gpu_type"] is None

    assert m["checkpoints"] == [3, 6]
    for d in (job / "adapter", job / "checkpoints" / "step-3", job / "checkpoints" / "step-6"):
        assert sorted(p.name for p in d.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not (job / "checkpoints" / ".resume").exists()  # optimizer states dropped at the end
    final, mid = _adapter(job / "adapter"), _adapter(job / "checkpoints" / "step-3")
    assert all((final[k] == v).all() for k, v in _adapter(job / "checkpoints" / "step-6").items())
    assert any((final[k] != mid[k]).any() for k in final)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in final.items())  # trained

    progress = json.loads((job / "progress.json").read_text())
    assert progress["step"] == progress["max_steps"] == 6 and progress["loss"] > 0 and progress["updated_at"] > 0


@pytest.mark.parametrize("kind,peft", [("sft", "lora"), ("dpo", "qlora")])
def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path, kind, peft):
    from jobs.errors import Preempted

    config = train_config(kind, peft, max_steps=8, save_steps=4, logging_steps=2)
    config["method"]["lora"]["dropout"] = 0.1  # RNG in the step: resume must restore it too
    whole = _run(tmp_path / "whole", config)

    job = tmp_path / "cut"
    job.mkdir()
    from jobs.train import stage as train

    with pytest.raises(Preempted, match="step 3"):
        train.run(job, typed(config), StopAtStep(3))
    assert (job / "checkpoints" / ".resume" / "checkpoint-3" / "COMPLETE").exists()
    assert not (job / "adapter").exists()
    assert json.loads((job / "progress.json").read_text())["step"] == 3
    resumed = _run(job, config)

    assert resumed["attempts"] == 2 and resumed["steps"] == 8
    assert [p["step"] for p in resumed["loss_curve"]] == [2, 4, 6, 8]
    for a, b in zip(whole["loss_curve"], resumed["loss_curve"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
    for step in ("adapter", "checkpoints/step-4", "checkpoints/step-8"):
        ta, tb = _adapter(tmp_path / "whole" / step), _adapter(job / step)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert (ta[k].float() - tb[k].float()).abs().max().item() <= 1e-6, (step, k)


def _launch_two(job: Path, config: dict, port: int) -> list[subprocess.Popen]:
    """Two ranks of `python -m jobs.entry <job>`, with the variables submitit's export() sets."""
    job.mkdir(parents=True, exist_ok=True)
    (job / "config.json").write_text(json.dumps(config))
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                   PYTHONPATH=str(ROOT))
        log = open(job / f"rank{rank}.log", "a")
        procs.append(subprocess.Popen([sys.executable, "-m", "jobs.entry", str(job)], cwd=ROOT, env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
    return procs


def _two_processes(job: Path, config: dict, port: int) -> list[int]:
    return [p.wait(timeout=600) for p in _launch_two(job, config, port)]


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind,peft", [("sft", "lora"), ("dpo", "qlora")])
def test_two_processes_deepspeed_zero2_over_gloo(tmp_path, kind, peft):
    job = tmp_path / "job"
    config = train_config(kind, peft, max_steps=4, save_steps=2, deepspeed_stage=2)
    codes = _two_processes(job, config, _port())
    assert codes == [0, 0], (job / "rank0.log").read_text()[-3000:]
    m = json.loads((job / "train_metrics.json").read_text())
    assert m["world_size"] == 2 and m["grad_accum"] == 1 and m["engine"] == "DeepSpeedEngine"
    assert m["deepspeed_stage"] == 2 and m["steps"] == 4 and m["checkpoints"] == [2, 4]
    assert m["final_loss"] < m["first_loss"]
    assert (job / "DONE").exists() and (job / "adapter" / "adapter_model.safetensors").exists()
    assert not (job / "checkpoints" / ".resume").exists()


def test_model_that_cannot_be_loaded_fails_with_one_line_naming_the_source(tmp_path):
    from jobs.entry import run_job
    from jobs.errors import JobFailure

    config = train_config("sft")
    config["model"]["source"] = str(tmp_path / "no-such-model")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(JobFailure):
        run_job(tmp_path)
    err = json.loads((tmp_path / "error.json").read_text())
    assert "no-such-model" in err["reason"] and "\n" not in err["reason"] and err["type"] == "JobFailure"


def test_nan_loss_ends_the_job(tmp_path):
    from jobs.errors import JobFailure

    with pytest.raises(JobFailure, match=r"loss is nan at step \d+"):
        _run(tmp_path, train_config("sft", learning_rate=1e30, max_steps=4))


def test_zero_rows_ends_the_job(tmp_path):
    from jobs.errors import JobFailure

    config = train_config("dpo")
    config["dataset"]["limit"] = 0
    with pytest.raises(JobFailure, match="zero rows"):
        _run(tmp_path, config)


HH = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test-first1000.jsonl.gz"


def _trainer_on_real_hh(tmp_path, kind: str, **method):
    """The job's trainer built on the real HH-RLHF rows (Vicuna template, tiny tokenizer), as run() builds it."""
    from jobs.train import stage as train
    from jobs.train import trl_adapter

    config = train_config(kind, **method)
    config["model"]["template"] = "vicuna"
    config["dataset"] = {"name": "hh", "format": "hh_rlhf", "source": str(HH), "revision": "main", "split": "train",
                         "subsets": None, "limit": 40}
    config = typed(config)
    plan = train.resolve(config, cuda=False, world_size=1)
    data = train.load_examples(config, plan.method)
    args = trl_adapter.make_args(plan.method, config, trl_adapter.Runtime(
        output_dir=str(tmp_path), grad_accum=1, optimizer="adamw_torch", bf16=False, deepspeed=None,
        liger=False, ddp_backend=None))
    model = train.load_model(config.model, plan, 0, device=args.device)
    trainer = trl_adapter.make_trainer(plan.method, config, model=model, tokenizer=data.tokenizer,
                                       dataset=data.dataset, peft_config=train.lora_config(config.method.lora),
                                       args=args, callbacks=[])
    return data, trainer


def test_sft_trainer_puts_loss_on_the_final_response_only(tmp_path):
    data, trainer = _trainer_on_real_hh(tmp_path, "sft", max_length=256)
    tok = data.tokenizer
    assert len(trainer.train_dataset) == len(data.dataset) == data.report.trained
    assert data.report.trained + data.report.examples_dropped["completion_truncated"] == 40
    multi_turn = 0
    for i, ex in enumerate(trainer.train_dataset):
        row = data.rows[data.kept[i]]
        want = " " + row["completion"][0]["content"] + tok.eos_token
        loss = tok.decode([t for t in ex["labels"] if t != -100])
        # the final response, cut at max_length at most (a cut inside a UTF-8 character decodes to U+FFFD)
        assert loss and want.startswith(loss.rstrip("\ufffd")), (loss, want)
        assert ex["input_ids"][:len(ex["labels"])] == data.dataset[i]["input_ids"]
        multi_turn += sum(m["role"] == "assistant" for m in row["prompt"]) > 0
    assert multi_turn > 10  # earlier assistant turns were there, and carried no loss


def test_dpo_trainer_gets_whole_prompts_when_the_pair_fits(tmp_path):
    data, trainer = _trainer_on_real_hh(tmp_path, "dpo", max_length=512, max_prompt_length=128)
    tok = data.tokenizer
    assert trainer.train_dataset.to_list() == data.dataset.to_list()  # TRL did not re-tokenize or cut
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    cut = 0
    for i in range(len(data.dataset)):
        row = data.rows[data.kept[i]]
        full = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                       return_dict=True)["input_ids"]
        ex = data.dataset[i]
        longer = max(len(ex["chosen_ids"]), len(ex["rejected_ids"]))
        if len(full) + longer <= 512:
            assert ex["prompt_ids"] == list(full)
        else:
            cut += 1
            assert len(ex["prompt_ids"]) == 128 and ex["prompt_ids"][0] == tok.bos_token_id
            assert ex["prompt_ids"][-20:] == list(full[-20:])
        if i < 4:  # the collator's keep_start truncation at max_length leaves every pair whole
            n = len(ex["prompt_ids"]) + len(ex["chosen_ids"])
            assert batch["input_ids"][i][:n].tolist() == ex["prompt_ids"] + ex["chosen_ids"]
    assert 0 < cut < len(data.dataset)


def test_trains_from_the_compiled_smoke_spec(tmp_path):
    from alignkit.plan.compiler import load_plan
    from jobs.entry import run_job

    plan = load_plan(ROOT / "sweeps" / "smoke.yaml", output_dir=tmp_path / "runs")
    job = next(j for j in plan.jobs if j.stage == "train" and written(j)["axes"]["method"] == "dpo"
               and written(j)["axes"]["peft"] == "qlora")
    job_dir = tmp_path / "runs" / "jobs" / job.id
    job_dir.mkdir(parents=True)
    (job_dir / "config.json").write_text(json.dumps(written(job)))
    assert run_job(job_dir) == "done"
    m = json.loads((job_dir / "train_metrics.json").read_text())
    assert m["steps"] == written(job)["training"]["max_steps"]
    assert m["checkpoints"] == list(range(written(job)["training"]["save_steps"], m["steps"] + 1,
                                          written(job)["training"]["save_steps"]))
    assert m["dpo"]["reward_accuracy"] > m["dpo"]["first_reward_accuracy"]
    assert (job_dir / "DONE").exists()


def test_two_process_zero2_run_killed_after_a_checkpoint_resumes_exactly(tmp_path):
    """A hard kill (no stop request) right after checkpoint 4 is marked complete, then a rerun:
    DeepSpeed's sharded optimizer state is restored and the result equals an uninterrupted run."""
    import time

    config = train_config("sft", "lora", max_steps=8, save_steps=4, deepspeed_stage=2, logging_steps=2)
    assert _two_processes(tmp_path / "whole", config, _port()) == [0, 0]

    job = tmp_path / "killed"
    procs = _launch_two(job, config, _port())
    marker = job / "checkpoints" / ".resume" / "checkpoint-4" / "COMPLETE"
    deadline = time.time() + 600
    while not marker.exists():
        assert time.time() < deadline and all(p.poll() is None for p in procs), "no checkpoint 4"
        time.sleep(0.05)
    for p in procs:
        p.kill()
        p.wait()
    assert not (job / "train_metrics.json").exists()
    assert _two_processes(job, config, _port()) == [0, 0], (job / "rank0.log").read_text()[-3000:]

    whole, resumed = (json.loads((d / "train_metrics.json").read_text()) for d in (tmp_path / "whole", job))
    assert resumed["attempts"] == 2 and resumed["engine"] == "DeepSpeedEngine"
    assert [p["loss"] for p in resumed["loss_curve"]] == pytest.approx([p["loss"] for p in whole["loss_curve"]],
                                                                       rel=1e-5)
    ta, tb = _adapter(tmp_path / "whole" / "adapter"), _adapter(job / "adapter")
    assert max((ta[k] - tb[k]).abs().max().item() for k in ta) <= 1e-6
