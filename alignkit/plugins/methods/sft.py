"""Supervised fine-tuning (TRL's SFTTrainer): on the chosen responses of preference data, as in the
paper, or on TRL's SFT data types (alignkit/plugins/formats/, docs/data.md).

Which tokens carry the loss follows TRL's rules (sft_trainer.md "Train on completion only" /
"Train on assistant messages only"):
  preference pairs     prompt/completion, the completion being the chosen (final) response
  prompt-completion    the completion's tokens (`completion_only_loss`, on by default; off: every token)
  messages             every token; with `assistant_only_loss: true` the assistant turns only
  text                 every token (an end-of-sequence token appended when missing)
Examples: jobs.data.examples (sft_example, messages_example, text_example) give `completion_mask`
= exactly the tokens that carry loss, which TRL applies to the labels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from alignkit.plugins.methods import METHODS
from alignkit.contract.methods import CommonFields, Method


@dataclass(frozen=True)
class SFTFields(CommonFields):
    completion_only_loss: bool = True  # loss on the response tokens only
    # conversational {messages} data: loss on the assistant turns only (TRL's default: off, every token)
    assistant_only_loss: bool = False
    unwritten_at_default: ClassVar[tuple[str, ...]] = ("assistant_only_loss",)  # earlier studies' ids stay


@METHODS.register("sft")
class SFT(Method):
    fields = SFTFields
    paired = False
    reference_model = False
    metrics = {"mean_token_accuracy": "token_accuracy"}
    columns = ("input_ids", "completion_mask")
    packs = True
    data_types = ("preference", "prompt_completion", "language_modeling")

    def rows(self, pairs: Any) -> Any:
        """Preference pairs -> prompt/completion (earlier assistant turns of a multi-turn transcript
        are context, as in DPO: docs/training.md); TRL's SFT rows are used as they are."""
        if "chosen" not in pairs.column_names:
            return pairs
        return pairs.map(lambda row: {"prompt": row["prompt"], "completion": row["chosen"]},
                         remove_columns=pairs.column_names)

    def examples(self, rows: Any, tokenizer: Any, f: SFTFields) -> tuple[Any, Counter, list[int]]:
        from jobs.data.examples import messages_example, sft_example, text_example, to_dataset

        out, kept, drops = [], [], Counter()
        for i, row in enumerate(rows):
            if "messages" in row:
                ex = messages_example(row["messages"], tokenizer, f.max_length, f.assistant_only_loss)
            elif "text" in row:
                ex = text_example(row["text"], tokenizer, f.max_length)
            else:
                ex = sft_example(row, tokenizer, f.max_length, f.completion_only_loss or f.assistant_only_loss)
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
            completion_only_loss=f.completion_only_loss or f.assistant_only_loss,
        )

    def trainer(self, f: SFTFields, *, model: Any, tokenizer: Any, train_dataset: Any, eval_dataset: Any,
                peft_config: Any, args: Any, callbacks: list) -> Any:
        from jobs.train import trl_classes

        return trl_classes.sft_trainer()(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                          processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)

    def decode(self, example: dict, tokenizer: Any, f: SFTFields) -> dict[str, str]:
        ids, mask = example["input_ids"], example["completion_mask"]
        loss = [t for t, m in zip(ids, mask, strict=True) if m]  # the mask is exactly the loss tokens
        return {"text": tokenizer.decode(ids), "loss_text": tokenizer.decode(loss)}
