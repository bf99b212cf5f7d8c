"""Which base weights a trained adapter applies to: ONE answer, used by the eval job and the merge job.

  LoRA   the base model as stored, in `model.dtype`.
  QLoRA  the base loaded in 4 bit exactly as the train job loaded it (same BitsAndBytesConfig,
         same load dtype), then dequantized into the compute dtype. These are, value for value, the
         weights training multiplied by: bitsandbytes 0.50.2's Linear4bit casts its input to the
         compute dtype and gemm_4bit dequantizes W straight into that dtype before F.linear
         (nn/modules.py Linear4bit.forward; backends/default/ops.py _gemm_4bit_default_impl;
         backends/cuda/ops.py _dequant_linear_fallback). Evaluating a QLoRA adapter on the bf16
         base instead adds the quantization error the adapter was trained around, and "merge vs its
         inputs" would mix that base change into the merge effect.

"As the train job loaded it" means the train job's config plus the substitutions its
train_metrics.json records (a CPU run trains in float32 instead of bfloat16): the load dtype
decides which 4-bit codes the weights get, the compute dtype the precision of the weights used.
Quantization runs on CUDA when present (as training did on the cluster), else on CPU; bitsandbytes
has separate CPU and CUDA kernels (docs/evaluation.md "QLoRA targets").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from alignkit import contract
from alignkit.contract import expect, paths
from alignkit.contract.common import ModelConfig
from alignkit.contract.errors import UserError
from alignkit.contract.fsio import read_json
from alignkit.contract.train import TrainConfig
from jobs.errors import JobFailure

DTYPES = ("float32", "bfloat16", "float16")
# The train job's own record of a value it could not use as configured (jobs/train/stage.py resolve()).
_SUBSTITUTABLE = {"model.dtype": "load_dtype", "peft.quantization.compute_dtype": "compute_dtype",
                  "peft.quantization.storage_dtype": "storage_dtype"}


@dataclass(frozen=True)
class BaseWeights:
    source: str
    revision: str | None
    dtype: str  # what the weights are materialised and run in
    quantization: dict[str, Any] | None = None  # the 4-bit settings as trained; None for LoRA
    load_dtype: str | None = None  # QLoRA: dtype the checkpoint was loaded in before quantizing

    def describe(self) -> str:
        if self.quantization:
            return (f"dequantized {self.quantization['quant_type']} 4-bit base (loaded in {self.load_dtype}) "
                    f"in {self.dtype}")
        return f"base in {self.dtype}"

    def record(self) -> dict[str, Any]:
        return dict(asdict(self), how=self.describe())


def _dtype_name(value: Any, where: str) -> str:
    if value not in DTYPES:
        raise JobFailure(f"{where}: dtype {value!r} is not one of {', '.join(DTYPES)}")
    return str(value)


def of_model(model_cfg: ModelConfig, where: str = "model.dtype") -> BaseWeights:
    """The plain base (LoRA targets, the untrained model itself) of a typed model config."""
    expect(model_cfg, ModelConfig, "jobs.base_weights.of_model")
    return BaseWeights(str(model_cfg.source), model_cfg.revision or None, _dtype_name(model_cfg.dtype, where))


def of_train_config(config: TrainConfig, substitutions: list[dict] | None = None,
                    where: str = "config.json") -> BaseWeights:
    """The base a train job's adapters were trained on, from its typed config + what it substituted.
    Every value is the config's (the spec's defaults, alignkit/contract/sections.py ModelSpec and
    QuantSpec, are filled when it is loaded): no second set of defaults here."""
    expect(config, TrainConfig, "jobs.base_weights.of_train_config")
    quant, model = config.peft.quantization, config.model
    if quant is None:
        return of_model(model, f"{where} model.dtype")
    used = {_SUBSTITUTABLE[s["key"]]: s["used"] for s in substitutions or [] if s.get("key") in _SUBSTITUTABLE}
    if quant.bits != 4:
        raise JobFailure(f"{where} peft.quantization.bits: only 4-bit QLoRA is supported, got {quant.bits}")
    q = {"bits": 4, "quant_type": quant.quant_type, "double_quant": bool(quant.double_quant),
         "compute_dtype": _dtype_name(used.get("compute_dtype", quant.compute_dtype),
                                      f"{where} peft.quantization.compute_dtype"),
         "storage_dtype": used.get("storage_dtype", quant.storage_dtype)}
    if q["storage_dtype"] != "uint8":
        _dtype_name(q["storage_dtype"], f"{where} peft.quantization.storage_dtype")
    load = _dtype_name(used.get("load_dtype", model.dtype), f"{where} model.dtype")
    return BaseWeights(str(model.source), model.revision or None, q["compute_dtype"], q, load)


def of_train_job(train_dir: Path) -> BaseWeights:
    """The base of `<sweep>/jobs/<train id>/`: its config.json (read through the contract) and, when
    present, the substitutions in its train_metrics.json (what the run actually used)."""
    cfg_path = Path(train_dir) / paths.CONFIG
    try:
        config = contract.load(cfg_path)
    except UserError as exc:
        raise JobFailure(f"the train job's config: {exc}") from None
    if not isinstance(config, TrainConfig):
        raise JobFailure(f"{cfg_path}: not a train job's config")
    metrics = Path(train_dir) / paths.TRAIN_METRICS
    subs = read_json(metrics).get("substitutions") if metrics.is_file() else None
    merged = merged_init(train_dir, config)
    if merged is not None:
        config = replace(config, model=replace(config.model, source=str(merged), revision=None))
    return of_train_config(config, subs, str(cfg_path))


def merged_init(train_dir: Path, config: TrainConfig) -> Path | None:
    """A chained run of init_mode merge trained on its merged upstream, <job>/init_model/
    (jobs/train/chain.py), not on the raw base; None for every other run."""
    if config.init is not None and config.init.mode == "merge":
        return Path(train_dir) / "init_model"
    return None


def _bnb_config(q: dict[str, Any]):
    import torch
    from transformers import BitsAndBytesConfig

    # The same construction as jobs/train/stage.py load_model().
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=q["quant_type"], bnb_4bit_use_double_quant=q["double_quant"],
        bnb_4bit_compute_dtype=getattr(torch, q["compute_dtype"]),
        bnb_4bit_quant_storage=getattr(torch, q["storage_dtype"]))


def load(bw: BaseWeights, device: str) -> Any:
    """The base model holding exactly these weights, in `bw.dtype`, on `device`, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    place = {"device_map": {"": device}} if device != "cpu" else {}
    try:
        if bw.quantization:
            # No forward pass may run on the 4-bit model before dequantizing: on AVX512-BF16 CPUs
            # bitsandbytes repacks 4-bit weights on the first eval-mode forward.
            model = AutoModelForCausalLM.from_pretrained(
                bw.source, revision=bw.revision, dtype=getattr(torch, bw.load_dtype),
                quantization_config=_bnb_config(bw.quantization), device_map={"": device})
            compute = getattr(torch, bw.dtype)
            for mod in model.modules():
                state = getattr(getattr(mod, "weight", None), "quant_state", None)
                if state is not None:
                    # The training forward dequantizes straight into the compute dtype (gemm_4bit
                    # default and CUDA fallback: dequantize_4bit(..., A.dtype)); transformers'
                    # dequantize goes through quant_state.dtype (the load dtype) first, a second
                    # rounding when that is narrower. Point it at the compute dtype.
                    state.dtype = compute
            model = model.dequantize(dtype=compute).to(compute)
            model.config.dtype = getattr(torch, bw.dtype)  # .to() leaves the loaded dtype in the config
        else:
            dtype = bw.dtype if bw.dtype == "auto" else getattr(torch, bw.dtype)
            model = AutoModelForCausalLM.from_pretrained(bw.source, revision=bw.revision, dtype=dtype, **place)
    except OSError as exc:
        raise JobFailure(f"cannot load model {bw.source}: {str(exc).splitlines()[0]}") from None
    return model.eval()
