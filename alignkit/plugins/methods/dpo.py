"""Direct Preference Optimization (TRL's DPOTrainer), with a PEFT reference (the adapter off).

Examples: jobs.data.examples.dpo_example (TRL 0.8.6's truncation). `loss_type` and
`label_smoothing` are TRL's (trl/trainer/dpo_config.py, DPOConfig.loss_type/label_smoothing;
the losses in dpo_trainer.py `_compute_loss`); they reach config.json only when not the
default, so the configs (and ids) of studies that never set them are unchanged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from alignkit.plugins.methods import METHODS
from alignkit.contract.methods import CommonFields, Method
from alignkit.contract.schema import Problems, join



@dataclass(frozen=True)
class DPOFields(CommonFields):
    # Each default is set here only: the spec, config.json (always written) and the train job read it.
    max_prompt_length: int = 128  # TRL 0.7/0.8's default; the paper does not state it
    beta: float = 0.1  # TRL's long-standing default; the paper does not state it
    # Not read by DPO (its loss is on the responses by construction); kept so that the configs,
    # and ids, of existing DPO runs stay what they were. Only true is accepted.
    completion_only_loss: bool = True
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    # robust only: the label-flip rate, in [0, 0.5) (TRL 1.16's sigmoid loss never reads it)
    label_smoothing: float = 0.0
    # TRL's defaults of the loss choice reach config.json only when changed (older configs and ids stay)
    unwritten_at_default: ClassVar[tuple[str, ...]] = ("loss_type", "label_smoothing")


@METHODS.register("dpo")
class DPO(Method):
    fields = DPOFields
    paired = True
    reference_model = True
    metrics = {"rewards/accuracies": "reward_accuracy", "rewards/margins": "reward_margin",
               "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected"}
    columns = ("prompt_ids", "chosen_ids", "rejected_ids")
    packs = False  # TRL's DPOTrainer does not pack

    def check(self, f: DPOFields, p: str, problems: Problems) -> None:
        if f.max_prompt_length <= 0:
            problems.add(join(p, "max_prompt_length"), f"must be positive, got {f.max_prompt_length}")
        elif f.max_prompt_length >= f.max_length:
            problems.add(join(p, "max_prompt_length"), f"{f.max_prompt_length} must be "
                                                       f"below max_length {f.max_length}")
        if f.beta <= 0:
            problems.add(join(p, "beta"), f"must be positive, got {f.beta}")
        if not f.completion_only_loss:
            problems.add(join(p, "completion_only_loss"), "an SFT setting: DPO's loss is on the responses; "
                                                          "remove it from a DPO method")
        if not 0 <= f.label_smoothing < 0.5:  # TRL: robust needs [0, 0.5); above 0.5 flips the preference
            problems.add(join(p, "label_smoothing"), f"must be in [0, 0.5), got {f.label_smoothing}")
        if f.loss_type == "sigmoid" and f.label_smoothing:
            # TRL 1.16 dpo_trainer.py:1387-1388: sigmoid is -logsigmoid(beta * delta), no label_smoothing;
            # the label-flip ("conservative") loss is robust's, lines 1428-1431
            problems.add(join(p, "label_smoothing"), "the sigmoid loss ignores label_smoothing (TRL 1.16); "
                                                     "for label-flip-robust DPO set loss_type: robust")
        elif f.loss_type in ("ipo", "hinge") and f.label_smoothing:
            problems.add(join(p, "label_smoothing"), f"the {f.loss_type} loss does not use label_smoothing "
                                                     f"(TRL reads it for robust only)")

    def examples(self, rows: Any, tokenizer: Any, f: DPOFields) -> tuple[Any, Counter, list[int]]:
        from jobs.data.examples import dpo_example, to_dataset

        out = [dpo_example(row, tokenizer, f.max_length, f.max_prompt_length) for row in rows]
        return to_dataset(out, self.columns), Counter(), list(range(len(out)))

    def trl_args(self, f: DPOFields, common: dict[str, Any], *, training: Any = None) -> Any:
        from jobs.train import trl_classes

        return trl_classes.dpo_config()(
            **common,
            beta=float(f.beta),
            loss_type=[f.loss_type],
            label_smoothing=float(f.label_smoothing),
            precompute_ref_log_probs=bool(training is not None and training.precompute_ref_log_probs),
        )

    def trainer(self, f: DPOFields, *, model: Any, tokenizer: Any, train_dataset: Any, eval_dataset: Any,
                peft_config: Any, args: Any, callbacks: list) -> Any:
        # ref_model=None with a PEFT model: the reference is the base with the adapter disabled, so
        # there is no second copy of the model in memory.
        from jobs.train import trl_classes

        return trl_classes.dpo_trainer()(model=model, ref_model=None, args=args, train_dataset=train_dataset,
                                       eval_dataset=eval_dataset, processing_class=tokenizer,
                                       peft_config=peft_config, callbacks=callbacks)

    def summary(self, curve: list[dict]) -> dict[str, Any]:
        last = curve[-1] if curve else {}
        return {"dpo": {"reward_accuracy": last.get("reward_accuracy"), "reward_margin": last.get("reward_margin"),
                        "first_reward_accuracy": curve[0].get("reward_accuracy") if curve else None}}
