"""The one place the methods (alignkit/plugins/methods/) get TRL's (1.16) config and trainer classes, and
the subclasses that take rows alignkit already tokenized and truncated (jobs.data.examples).

ORPO and CPO live in `trl.experimental` in TRL 1.16; KTO was promoted to `trl` (its
`trl.experimental.kto` path is a deprecated alias). A TRL upgrade that moves or renames them
breaks this file only. It is compute-node code: a method's hooks import it when a job runs, so the
login node never imports trl (each accessor imports it when called, which keeps `alignkit preview`
and the spec-time code free of it too).
"""

from __future__ import annotations

from functools import lru_cache

# What the pre-tokenized CPO/ORPO rows carry: TRL 1.16's `CPOTrainer.tokenize_row` /
# `ORPOTrainer.tokenize_row` output for a decoder-only model (trl/experimental/cpo/cpo_trainer.py).
PAIR_COLUMNS = ("prompt_input_ids", "prompt_attention_mask", "chosen_input_ids", "chosen_attention_mask",
                "chosen_labels", "rejected_input_ids", "rejected_attention_mask", "rejected_labels")
# What the pre-tokenized KTO rows carry: KTOTrainer._prepare_dataset's tokenize_fn output, plus the label.
UNPAIRED_COLUMNS = ("prompt_ids", "completion_ids", "label")


def unpair(pairs):
    """TRL's own derivation of unpaired rows: each pair -> (prompt, chosen, True), (prompt, rejected, False)
    (trl.data_utils.unpair_preference_dataset)."""
    from trl.data_utils import unpair_preference_dataset

    return unpair_preference_dataset(pairs)

def sft_config():
    from trl import SFTConfig

    return SFTConfig


def sft_trainer():
    from trl import SFTTrainer

    return SFTTrainer


def dpo_config():
    from trl import DPOConfig

    return DPOConfig


@lru_cache(maxsize=1)
def dpo_trainer() -> type:
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer on rows jobs.data.examples already tokenized and truncated as TRL 0.8 did.
        TRL 1.16's `_prepare_dataset` would tokenize `prompt`/`chosen`/`rejected` again; these rows
        are already its output (`prompt_ids`, `chosen_ids`, `rejected_ids`), each fitting
        `max_length`, so the collator's own keep_start truncation never cuts."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            # the study's shared pass when the job set one up (jobs/train/reference.py), else TRL's own
            from jobs.train import reference

            shared = reference.current()
            if shared is None:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            return reference.precompute(self, shared, dataset, name, batch_size)

    return PretokenizedDPOTrainer



def kto_config():
    from trl import KTOConfig

    return KTOConfig


def orpo_config():
    from trl.experimental.orpo import ORPOConfig

    return ORPOConfig


def cpo_config():
    from trl.experimental.cpo import CPOConfig

    return CPOConfig


@lru_cache(maxsize=1)
def kto_trainer() -> type:
    from trl import KTOTrainer

    class PretokenizedKTOTrainer(KTOTrainer):
        """KTOTrainer on rows that already hold `prompt_ids`/`completion_ids`/`label`, each fitting
        max_length. Only TRL's KL step of `_prepare_dataset` is left to do, with TRL's rule: rotate
        the completions by one within each block of per_device_train_batch_size rows
        (trl/trainer/kto_trainer.py, `add_kl_completion_ids`)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" not in dataset.column_names:
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if not self.calculate_KL:
                return dataset

            def add_kl_completion_ids(examples):
                examples["KL_completion_ids"] = [examples["completion_ids"][-1]] + examples["completion_ids"][:-1]
                return examples

            return dataset.map(add_kl_completion_ids, batched=True, batch_size=args.per_device_train_batch_size)

    return PretokenizedKTOTrainer


def _pretokenized_pair_trainer(base: type) -> type:
    class PretokenizedPairTrainer(base):
        """TRL's experimental pair trainer on rows that already hold its `tokenize_row` columns: the
        prompt-extraction and chat-template maps leave rows without chosen/rejected text alone, and
        `tokenize_row` adds nothing to a row that has them."""

        def tokenize_row(self, feature, model=None):
            if "chosen_input_ids" in feature:
                return {}
            return super().tokenize_row(feature, model)

    PretokenizedPairTrainer.__name__ = f"Pretokenized{base.__name__}"
    return PretokenizedPairTrainer


@lru_cache(maxsize=1)
def orpo_trainer() -> type:
    from trl.experimental.orpo import ORPOTrainer

    return _pretokenized_pair_trainer(ORPOTrainer)


@lru_cache(maxsize=1)
def cpo_trainer() -> type:
    from trl.experimental.cpo import CPOTrainer

    return _pretokenized_pair_trainer(CPOTrainer)


def pair_example(row: dict, tokenizer, max_length: int, max_prompt_length: int) -> dict:
    """One chosen/rejected pair as CPO/ORPO's `tokenize_row` columns, tokenized and truncated exactly
    as DPO's rows are (jobs.data.examples.dpo_example), labels -100 over the prompt."""
    from jobs.data.examples import dpo_example

    ex = dpo_example(row, tokenizer, max_length, max_prompt_length)
    prompt = ex["prompt_ids"]
    out = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        ids = prompt + ex[f"{side}_ids"]
        out[f"{side}_input_ids"] = ids
        out[f"{side}_attention_mask"] = [1] * len(ids)
        out[f"{side}_labels"] = [-100] * len(prompt) + ex[f"{side}_ids"]
    return out


def unpaired_example(row: dict, tokenizer, max_length: int, max_prompt_length: int) -> dict:
    """One (prompt, completion, label) row as KTO's columns: TRL 1.16's tokenization
    (KTOTrainer._prepare_dataset tokenize_fn), truncated by DPO's rule (jobs.data.examples.cut_pair,
    TRL 0.8.6's KTO `_process_tokens` cut the same way), so the collator never cuts."""
    from jobs.data.examples import _prefix, _tokenize, cut_pair, head_length

    prompt_ids = _tokenize(tokenizer, row["prompt"], add_generation_prompt=True)
    full = _tokenize(tokenizer, row["prompt"] + row["completion"])
    n = _prefix(prompt_ids, full)
    prompt, completion, _ = cut_pair(prompt_ids[:n], full[n:], full[n:],
                                     head_length(tokenizer, row["prompt"], prompt_ids[:n]),
                                     max_length, max_prompt_length)
    return {"prompt_ids": prompt, "completion_ids": completion, "label": bool(row["label"])}
