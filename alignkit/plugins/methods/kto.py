"""Kahneman-Tversky Optimization (TRL's KTOTrainer, stable in TRL 1.16; via jobs/train/trl_classes.py).

Data: TRL's unpaired preference rows {prompt, completion, label} as they are, or preference pairs
unpaired: each normalized preference pair becomes one desirable row (prompt, chosen, label true)
and one undesirable row (prompt, rejected, label false), by TRL's own
`trl.data_utils.unpair_preference_dataset`. TRL's KTOTrainer samples sequentially (the KL
estimate pairs each prompt with its batch neighbour's completion), so the unpaired rows are mixed
once with a fixed permutation (the pairs already arrive in the run seed's shuffled order) rather
than leaving every desirable row of a 1,000-pair map batch ahead of the undesirable ones.
Truncation: DPO's rule (jobs.data.examples.cut_pair) on prompt + completion, so each row fits
max_length and TRL's collator (keep_start at max_length) never cuts. The reference is the base
with the adapter off, as for DPO. docs/methods.md lists fields, defaults and sources.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from alignkit.plugins.methods import METHODS
from alignkit.contract.methods import CommonFields, Method
from alignkit.contract.schema import Problems, join

MIX_SEED = 0  # the fixed permutation of the unpaired rows (the pairs are already seed-shuffled)


@dataclass(frozen=True)
class KTOFields(CommonFields):
    beta: float = 0.1  # TRL KTOConfig default (the KTO paper's too)
    desirable_weight: float = 1.0  # TRL KTOConfig default (λ_D); 1:1 suits the balanced rows made here
    undesirable_weight: float = 1.0  # TRL KTOConfig default (λ_U)
    max_prompt_length: int = 128  # as DPO's (TRL 0.8's default); TRL 1.16's KTO has no prompt cut


@METHODS.register("kto")
class KTO(Method):
    fields = KTOFields
    paired = False  # rows are unpaired completions with a desirable/undesirable label
    data_types = ("preference", "unpaired_preference")  # alignkit/plugins/formats/: pairs are unpaired here
    reference_model = True
    metrics = {"rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
               "rewards/margins": "reward_margin", "kl": "kl"}
    columns = ("prompt_ids", "completion_ids", "label")
    packs = False

    def check(self, f: KTOFields, p: str, problems: Problems) -> None:
        if f.beta <= 0:
            problems.add(join(p, "beta"), f"must be positive, got {f.beta}")
        for key in ("desirable_weight", "undesirable_weight"):
            if getattr(f, key) <= 0:
                problems.add(join(p, key), f"must be positive, got {getattr(f, key)}")
        if not 0 < f.max_prompt_length < f.max_length:
            problems.add(join(p, "max_prompt_length"), f"{f.max_prompt_length} must be positive and below "
                                                       f"max_length {f.max_length}")
        if f.per_device_batch_size < 2:  # TRL's KTOTrainer refuses it: the KL term would equal the reward
            problems.add(join(p, "per_device_batch_size"), "KTO needs at least 2 (its KL estimate pairs each "
                                                           "prompt with another row's completion in the batch)")

    def advice(self, cfg: Any) -> list[str]:
        """TRL 1.16 docs/source/kto_trainer.md, "Batch size recommendations": a per-step batch of at
        least 4 and an effective batch of 16-128 (a poor per-step batch makes the KL estimate poor);
        "Imbalanced data": (desirable_weight x positives) : (undesirable_weight x negatives) in
        [1:1, 4:3]. Here every pair gives one row of each, so the rule is on the weights' ratio."""
        out = []
        per_device, total = cfg.per_device_batch_size, cfg.batch_size
        if per_device < 4:
            out.append(f"per_device_batch_size: {per_device} is below TRL's KTO recommendation of at least 4 "
                       f"per step (its KL estimate pairs rows within a step's batch)")
        if not 16 <= total <= 128:
            out.append(f"batch_size: {total} is outside TRL's KTO recommendation of an effective batch of 16-128")
        d, u = cfg.desirable_weight, cfg.undesirable_weight
        if u > 0 and not 1 <= d / u <= 4 / 3:
            out.append(f"desirable_weight/undesirable_weight: {d:g}/{u:g} = {d / u:.3g} is outside TRL's KTO "
                       f"rule for these balanced rows (one desirable and one undesirable per pair): "
                       f"(desirable_weight x positives) : (undesirable_weight x negatives) in [1, 4/3]")
        return out

    def rows(self, pairs: Any) -> Any:
        from jobs.train.trl_classes import unpair

        if "label" in pairs.column_names:  # already unpaired (and shuffled with the run seed)
            return pairs.select_columns(["prompt", "completion", "label"])
        keep = [c for c in pairs.column_names if c in ("prompt", "chosen", "rejected")]
        rows = unpair(pairs.select_columns(keep))
        return rows.shuffle(seed=MIX_SEED).flatten_indices()

    def examples(self, rows: Any, tokenizer: Any, f: KTOFields) -> tuple[Any, Counter, list[int]]:
        from jobs.train.trl_classes import unpaired_example
        from jobs.data.examples import to_dataset

        out = [unpaired_example(row, tokenizer, f.max_length, f.max_prompt_length) for row in rows]
        return to_dataset(out, self.columns), Counter(), list(range(len(out)))

    def trl_args(self, f: KTOFields, common: dict[str, Any], *, training: Any = None) -> Any:
        from jobs.train.trl_classes import kto_config

        return kto_config()(
            **common,
            beta=float(f.beta),
            desirable_weight=float(f.desirable_weight),
            undesirable_weight=float(f.undesirable_weight),
            loss_type="kto",
            train_sampling_strategy="sequential",  # TRL's default, required by the KL estimate
            precompute_ref_log_probs=bool(training is not None and training.precompute_ref_log_probs),
        )

    def trainer(self, f: KTOFields, *, model: Any, tokenizer: Any, train_dataset: Any, eval_dataset: Any,
                peft_config: Any, args: Any, callbacks: list) -> Any:
        from jobs.train.trl_classes import kto_trainer

        return kto_trainer()(model=model, ref_model=None, args=args, train_dataset=train_dataset,
                             eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config,
                             callbacks=callbacks)

    def decode(self, example: dict, tokenizer: Any, f: KTOFields) -> dict[str, str]:
        return {"prompt": tokenizer.decode(example["prompt_ids"]),
                "completion": tokenizer.decode(example["completion_ids"]),
                "label": "desirable" if example["label"] else "undesirable"}
