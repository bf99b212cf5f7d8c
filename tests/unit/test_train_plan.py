"""Fast checks of the training job's decisions: hyperparameter mapping, batch arithmetic,
CPU substitutions, checkpoint bookkeeping, distributed environment, ZeRO configs."""

from __future__ import annotations

import pytest

from jobs.train import checkpoints
from jobs.train import distributed
from jobs.train.deepspeed_config import zero_config
from jobs.errors import JobFailure
from jobs.train.stage import loss_curve, resolve
from tests.unit.train_configs import train_config, typed


def test_grad_accum_is_global_batch_over_per_device_times_world():
    cfg = train_config("dpo", batch_size=16, per_device_batch_size=4)
    assert resolve(typed(cfg), cuda=False, world_size=1).grad_accum == 4
    assert resolve(typed(cfg), cuda=False, world_size=2).grad_accum == 2
    assert resolve(typed(cfg), cuda=False, world_size=4).grad_accum == 1


def test_indivisible_batch_is_a_one_line_failure():
    cfg = train_config("sft", batch_size=16, per_device_batch_size=4)
    with pytest.raises(JobFailure, match=r"batch_size 16 is not a multiple of per_device_batch_size 4 x world size 3"):
        resolve(typed(cfg), cuda=False, world_size=3)


def test_cpu_substitutes_paged_optimizer_and_bf16_and_records_it():
    plan = resolve(typed(train_config("sft", "qlora")), cuda=False, world_size=1)
    assert plan.optimizer == "adamw_torch" and plan.bf16 is False and plan.model_dtype == "float32"
    subs = {s["key"]: s for s in plan.substitutions}
    assert subs["method.optimizer"]["configured"] == "paged_adamw_32bit"
    assert subs["method.optimizer"]["used"] == "adamw_torch"
    assert subs["peft.quantization.compute_dtype"]["used"] == "float32"
    assert plan.quantization.compute_dtype == "float32"
    assert plan.quantization.double_quant is True and plan.quantization.quant_type == "nf4"


def test_gpu_keeps_the_configured_values():
    plan = resolve(typed(train_config("dpo", "qlora")), cuda=True, world_size=1)
    assert plan.optimizer == "paged_adamw_32bit" and plan.bf16 is True
    assert plan.substitutions == []
    assert plan.quantization.compute_dtype == "bfloat16"


def test_zero3_qlora_storage_dtype_follows_the_model_dtype():
    cfg = train_config("sft", "qlora", deepspeed_stage=3)
    cfg["peft"]["quantization"]["storage_dtype"] = "uint8"
    plan = resolve(typed(cfg), cuda=True, world_size=2)
    assert plan.quantization.storage_dtype == "bfloat16"
    assert [s["key"] for s in plan.substitutions] == ["peft.quantization.storage_dtype"]


def test_liger_on_without_gpu_fails_and_auto_is_off_on_cpu():
    with pytest.raises(JobFailure, match="training.liger"):
        resolve(typed(train_config("sft", liger="on")), cuda=False, world_size=1)
    assert resolve(typed(train_config("sft", liger="auto")), cuda=False, world_size=1).liger is False


def test_unknown_method_type_fails_naming_the_key():
    from alignkit.contract import ContractError

    cfg = train_config("sft")
    cfg["method"]["type"] = "ppo"
    with pytest.raises(ContractError, match=r"method.type: unknown method type 'ppo' \(known: .*dpo.*sft"):
        resolve(typed(cfg), cuda=False, world_size=1)


def test_defaults_come_from_the_spec_model_dtype_and_qlora_storage():
    """The issue's disagreements: a config without model.dtype or storage_dtype gets the spec's
    defaults (bfloat16 both), not train's old float32/uint8."""
    from alignkit.contract.sections import ModelSpec, QuantSpec

    cfg = train_config("sft", "qlora")
    del cfg["model"]["dtype"], cfg["peft"]["quantization"]["storage_dtype"]
    typed_cfg = typed(cfg)
    assert typed_cfg.model.dtype == ModelSpec.dtype == "bfloat16"
    assert typed_cfg.peft.quantization.storage_dtype == QuantSpec.storage_dtype == "bfloat16"
    plan = resolve(typed_cfg, cuda=True, world_size=1)
    assert (plan.model_dtype, plan.quantization.storage_dtype) == ("bfloat16", "bfloat16")


def test_trl_arguments_carry_the_hyperparameters_exactly(tmp_path):
    from jobs.train import trl_adapter

    cfg = train_config("dpo", batch_size=16, per_device_batch_size=4, learning_rate=5e-5,
                       lr_scheduler="cosine", warmup_ratio=0.1, max_grad_norm=0.3, weight_decay=0.01,
                       adam_beta1=0.85, adam_beta2=0.99, max_length=512, beta=0.2, max_steps=700,
                       save_steps=100, precompute_ref_log_probs=True)
    rt = trl_adapter.Runtime(output_dir=str(tmp_path), grad_accum=4, optimizer="adamw_torch", bf16=False,
                             deepspeed=None, liger=False, ddp_backend=None)
    from alignkit.plugins.methods import method

    a = trl_adapter.make_args(method("dpo"), typed(dict(cfg, seed=3)), rt)
    assert (a.learning_rate, a.lr_scheduler_type.value, a.warmup_steps) == (5e-5, "cosine", 0.1)
    assert (a.per_device_train_batch_size, a.gradient_accumulation_steps) == (4, 4)
    assert (a.max_grad_norm, a.weight_decay, a.adam_beta1, a.adam_beta2) == (0.3, 0.01, 0.85, 0.99)
    assert (a.beta, a.max_length, a.seed, a.max_steps, a.save_steps) == (0.2, 512, 3, 700, 100)
    assert a.precompute_ref_log_probs is True and a.bf16 is False and a.fp16 is False
    assert a.loss_type == ["sigmoid"]
    assert a.get_warmup_steps(700) == 70

    s = trl_adapter.make_args(method("sft"), typed(train_config("sft")), rt)
    assert s.assistant_only_loss is False and s.completion_only_loss is True and s.packing is False


def test_loss_curve_windows_per_step_rows():
    rows = [{"step": s, "loss": float(s), "learning_rate": 0.1 * s} for s in range(1, 8)]
    curve = loss_curve(rows, 3)
    assert [p["step"] for p in curve] == [3, 6, 7]
    assert [p["loss"] for p in curve] == [2.0, 5.0, 7.0]
    assert curve[1]["learning_rate"] == pytest.approx(0.6)


def test_latest_complete_checkpoint_ignores_partial_ones(tmp_path):
    root = checkpoints.resume_dir(tmp_path)
    for step, complete in ((2, True), (4, True), (6, False)):
        (root / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (root / f"checkpoint-{step}" / checkpoints.MARKER).write_text("{}")
    assert checkpoints.latest_complete(tmp_path).name == "checkpoint-4"
    checkpoints.drop_partial(tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert checkpoints.run_state(None) == {"wall_s": 0.0, "attempts": 0}


def test_distributed_env_from_torch_vars_slurm_or_nothing():
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2",
           "MASTER_ADDR": "node7", "MASTER_PORT": "29999"}
    d = distributed.read_env(env)
    assert (d.rank, d.local_rank, d.world_size, d.local_world_size, d.master_addr, d.master_port) == \
        (3, 1, 4, 2, "node7", 29999)
    assert not d.is_main and d.multi_process
    single = distributed.read_env({"SLURM_JOB_ID": "12", "SLURM_NTASKS": "1"})
    assert (single.world_size, single.rank) == (1, 0)
    assert distributed.read_env({}).world_size == 1


def test_zero_configs():
    assert zero_config(0, bf16=True) is None
    z2 = zero_config(2, bf16=False)
    assert z2["zero_optimization"]["stage"] == 2 and z2["bf16"]["enabled"] is False
    assert z2["train_batch_size"] == "auto"  # filled from the Trainer's own arguments
    z3 = zero_config(3, bf16=True)
    assert z3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    with pytest.raises(JobFailure, match="deepspeed_stage"):
        zero_config(4, bf16=False)
