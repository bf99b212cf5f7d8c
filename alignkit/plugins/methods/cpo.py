"""Contrastive Preference Optimization and SimPO (TRL 1.16's trl.experimental CPOTrainer, via
jobs/train/trl_classes.py). SimPO is CPO with `loss_type: simpo` (length-normalized log-probs and a
target margin `simpo_gamma`); the SimPO paper's loss has no NLL term, i.e. `cpo_alpha: 0`.

No reference model. Rows, truncation and preview as ORPO's (alignkit/plugins/methods/orpo.py).
docs/methods.md lists fields, defaults and sources.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from alignkit.plugins.methods import METHODS
from alignkit.contract.methods import CommonFields, Method
from alignkit.plugins.methods.orpo import ORPO, check_pair_spec, decode_pair
from alignkit.contract.schema import Problems, join


@dataclass(frozen=True)
class CPOFields(CommonFields):
    loss_type: Literal["sigmoid", "simpo"] = "sigmoid"  # TRL CPOConfig default
    beta: float = 0.1  # TRL CPOConfig default
    simpo_gamma: float = 0.5  # TRL CPOConfig default; read by loss_type simpo only
    cpo_alpha: float = 1.0  # TRL CPOConfig default: weight of the NLL (behaviour cloning) term
    label_smoothing: float = 0.0  # TRL CPOConfig default
    max_prompt_length: int = 128  # as DPO's (TRL 0.8's default)


@METHODS.register("cpo")
class CPO(Method):
    fields = CPOFields
    paired = True
    reference_model = False
    metrics = {"rewards/accuracies": "reward_accuracy", "rewards/margins": "reward_margin",
               "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected", "nll_loss": "nll_loss"}
    columns = ORPO.columns
    packs = False

    def check(self, f: CPOFields, p: str, problems: Problems) -> None:
        if f.beta <= 0:
            problems.add(join(p, "beta"), f"must be positive, got {f.beta}")
        if f.cpo_alpha < 0:
            problems.add(join(p, "cpo_alpha"), f"must be zero or more, got {f.cpo_alpha}")
        if f.simpo_gamma < 0:
            problems.add(join(p, "simpo_gamma"), f"must be zero or more, got {f.simpo_gamma}")
        if f.loss_type != "simpo" and f.simpo_gamma != CPOFields.simpo_gamma:
            problems.add(join(p, "simpo_gamma"), f"read only by loss_type simpo (this method's is {f.loss_type})")
        if not 0 <= f.label_smoothing < 0.5:
            problems.add(join(p, "label_smoothing"), f"must be in [0, 0.5), got {f.label_smoothing}")
        if not 0 < f.max_prompt_length < f.max_length:
            problems.add(join(p, "max_prompt_length"), f"{f.max_prompt_length} must be positive and below "
                                                       f"max_length {f.max_length}")

    def check_spec(self, f: CPOFields, spec: Any, p: str, problems: Problems) -> None:
        check_pair_spec("SimPO" if f.loss_type == "simpo" else "CPO", spec, p, problems)

    def examples(self, rows: Any, tokenizer: Any, f: CPOFields) -> tuple[Any, Counter, list[int]]:
        return ORPO.examples(self, rows, tokenizer, f)

    def trl_args(self, f: CPOFields, common: dict[str, Any], *, training: Any = None) -> Any:
        from jobs.train.trl_classes import cpo_config

        return cpo_config()(**common, loss_type=f.loss_type, beta=float(f.beta), simpo_gamma=float(f.simpo_gamma),
                            cpo_alpha=float(f.cpo_alpha), label_smoothing=float(f.label_smoothing),
                            remove_unused_columns=False)

    def trainer(self, f: CPOFields, *, model: Any, tokenizer: Any, train_dataset: Any, eval_dataset: Any,
                peft_config: Any, args: Any, callbacks: list) -> Any:
        from jobs.train.trl_classes import cpo_trainer

        return cpo_trainer()(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                             processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)

    def decode(self, example: dict, tokenizer: Any, f: CPOFields) -> dict[str, str]:
        return decode_pair(example, tokenizer)
