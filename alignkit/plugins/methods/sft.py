"""Supervised fine-tuning on the chosen responses (TRL's SFTTrainer), as in the paper.

Rows: TRL's conversational prompt/completion form, the completion being the chosen (final)
response; the loss is on it only (completion_only_loss). Examples: jobs.data.examples.sft_example.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from alignkit.plugins.methods import METHODS
from alignkit.contract.methods import CommonFields, Method


@dataclass(frozen=True)
class SFTFields(CommonFields):
    completion_only_loss: bool = True  # loss on the response tokens only


@METHODS.register("sft")
class SFT(Method):
    fields = SFTFields
    paired = False
    reference_model = False
    metrics = {"mean_token_accuracy": "token_accuracy"}
    columns = ("input_ids", "completion_mask")
    packs = True

    def rows(self, pairs: Any) -> Any:
        """Earlier assistant turns of a multi-turn transcript are context, as in DPO (docs/training.md)."""
        return pairs.map(lambda row: {"prompt": row["prompt"], "completion": row["chosen"]},
                         remove_columns=pairs.column_names)

    def examples(self, rows: Any, tokenizer: Any, f: SFTFields) -> tuple[Any, Counter, list[int]]:
        from jobs.data.examples import sft_example, to_dataset

        out, kept, drops = [], [], Counter()
        for i, row in enumerate(rows):
            ex = sft_example(row, tokenizer, f.max_length)
            if ex is None:  # the final response lies wholly beyond max_length: nothing to train on
                drops["completion_truncated"] += 1
                continue
            out.append(ex)
            kept.append(i)
        return to_dataset(out, self.columns), drops, kept

    def trl_args(self, f: SFTFields, common: dict[str, Any], *, training: Any = None) -> Any:
        from jobs.train import trl_classes

        return trl_classes.sft_config()(
            **common,
            packing=bool(training is not None and training.packing),
            packing_strategy="bfd",  # best-fit packing; implies padding-free batches
            # rows come tokenized with a completion_mask over the final response; TRL turns it
            # into labels (-100 elsewhere) when completion_only_loss is on
            assistant_only_loss=False,
            completion_only_loss=f.completion_only_loss,
        )

    def trainer(self, f: SFTFields, *, model: Any, tokenizer: Any, train_dataset: Any, eval_dataset: Any,
                peft_config: Any, args: Any, callbacks: list) -> Any:
        from jobs.train import trl_classes

        return trl_classes.sft_trainer()(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                          processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)

    def decode(self, example: dict, tokenizer: Any, f: SFTFields) -> dict[str, str]:
        ids, mask = example["input_ids"], example["completion_mask"]
        loss = [t for t, m in zip(ids, mask, strict=True) if m or not f.completion_only_loss]
        return {"text": tokenizer.decode(ids), "loss_text": tokenizer.decode(loss)}
