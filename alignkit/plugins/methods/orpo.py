"""Odds Ratio Preference Optimization (TRL 1.16's trl.experimental ORPOTrainer, via jobs/train/trl_classes.py).

No reference model: the loss is the chosen response's NLL plus λ times the log-odds-ratio term
(TRL calls λ `beta`). Rows are DPO's pairs, tokenized and truncated exactly as DPO's
(jobs.data.examples.dpo_example: TRL 0.8.6's prompt cut to max_prompt_length, then the responses)
and handed to the trainer as its own `tokenize_row` columns, so TRL 1.16's cut (responses to
max_length minus the prompt) never applies. docs/methods.md lists fields, defaults and sources.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from alignkit.plugins.methods import METHODS
from alignkit.contract.methods import CommonFields, Method
from alignkit.contract.schema import Problems, join


@dataclass(frozen=True)
class ORPOFields(CommonFields):
    beta: float = 0.1  # λ; TRL ORPOConfig default (the ORPO paper's λ = 0.1 too)
    max_prompt_length: int = 128  # as DPO's (TRL 0.8's default)


def check_pair_spec(name: str, spec: Any, p: str, problems: Problems) -> None:
    """Spec-wide refusals shared by the reference-free pair methods (ORPO, CPO)."""
    t = spec.training
    if t.precompute_ref_log_probs:
        problems.add("training.precompute_ref_log_probs", f"{name} has no reference model (method {p}); "
                                                          f"set it false")
    half = sorted(n for n, m in spec.models.items() if m.dtype in ("bfloat16", "float16"))
    if t.deepspeed_stage == 3 and half and any(q.quantization is not None for q in spec.peft.values()):
        # jobs/train/stage.py skips that call under ZeRO-3 for SFT/DPO; TRL's experimental trainers make it
        # unconditionally for a 4-bit model. In float32 (CPU) nothing is upcast, and it runs.
        problems.add("training.deepspeed_stage", f"{name} with QLoRA under ZeRO-3 does not work (method {p}, "
                                                 f"{half[0]} in {spec.models[half[0]].dtype}): TRL's experimental "
                                                 f"trainer runs prepare_model_for_kbit_training, which upcasts "
                                                 f"norms to float32, and ZeRO-3 shards one dtype")


@METHODS.register("orpo")
class ORPO(Method):
    fields = ORPOFields
    paired = True
    reference_model = False
    metrics = {"rewards/accuracies": "reward_accuracy", "rewards/margins": "reward_margin",
               "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
               "log_odds_ratio": "log_odds_ratio", "nll_loss": "nll_loss"}
    columns = ("prompt_input_ids", "prompt_attention_mask", "chosen_input_ids", "chosen_attention_mask",
               "chosen_labels", "rejected_input_ids", "rejected_attention_mask", "rejected_labels")
    packs = False

    def check(self, f: ORPOFields, p: str, problems: Problems) -> None:
        if f.beta <= 0:
            problems.add(join(p, "beta"), f"must be positive, got {f.beta}")
        if not 0 < f.max_prompt_length < f.max_length:
            problems.add(join(p, "max_prompt_length"), f"{f.max_prompt_length} must be positive and below "
                                                       f"max_length {f.max_length}")

    def check_spec(self, f: ORPOFields, spec: Any, p: str, problems: Problems) -> None:
        check_pair_spec("ORPO", spec, p, problems)

    def examples(self, rows: Any, tokenizer: Any, f: ORPOFields) -> tuple[Any, Counter, list[int]]:
        from jobs.train.trl_classes import pair_example
        from jobs.data.examples import to_dataset

        out = [pair_example(row, tokenizer, f.max_length, f.max_prompt_length) for row in rows]
        return to_dataset(out, self.columns), Counter(), list(range(len(out)))

    def trl_args(self, f: ORPOFields, common: dict[str, Any], *, training: Any = None) -> Any:
        from jobs.train.trl_classes import orpo_config

        return orpo_config()(**common, beta=float(f.beta), remove_unused_columns=False)

    def trainer(self, f: ORPOFields, *, model: Any, tokenizer: Any, train_dataset: Any, eval_dataset: Any,
                peft_config: Any, args: Any, callbacks: list) -> Any:
        from jobs.train.trl_classes import orpo_trainer

        return orpo_trainer()(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                              processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)

    def decode(self, example: dict, tokenizer: Any, f: ORPOFields) -> dict[str, str]:
        return decode_pair(example, tokenizer)


def decode_pair(example: dict, tokenizer: Any) -> dict[str, str]:
    """What preview shows of a CPO/ORPO row: the prompt and each response, as DPO's."""
    n = len(example["prompt_input_ids"])
    return {"prompt": tokenizer.decode(example["prompt_input_ids"]),
            "chosen": tokenizer.decode(example["chosen_input_ids"][n:]),
            "rejected": tokenizer.decode(example["rejected_input_ids"][n:])}
