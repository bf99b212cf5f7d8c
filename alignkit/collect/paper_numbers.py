"""The published numbers of Thakkar et al. (ACL 2024), Tables 2-5, as data (docs: paper.md §A.5).

Copied verbatim from the paper's tables; the paper reports single numbers (no std, and it does
not say whether they are means over its 5 seeds). Units as printed: MMLU accuracy, BBH exact
match, AlpacaEval win rate against GPT-4 in percent, RT = mean logit of
nicholasKluge/ToxicityModel (higher = safer). No Red-Instruct numbers are printed in any table.

Each number is a `PaperCell` keyed the way our results are: paper model name, our dataset and
PEFT names, preference ("harmless", "helpful", "harmless+helpful", or "original" for the
untrained base), method ("sft", "dpo", "dpo+sft" for a merge of both), merge method
(None, "slerp", "dare_ties") and our benchmark name.
"""

from __future__ import annotations

from dataclasses import dataclass

# Our spec's names (sweeps/full.yaml) → the paper's. A model config's `paper_name` wins over this.
MODEL_NAMES = {"mistral-7b": "Mistral-7b", "mistral-7b-instruct": "Mistral-7b-Ins", "llama-7b": "LLaMA-1",
               "vicuna-7b": "Vicuna-v1.3"}
DATASET_NAMES = {"hh-rlhf": "HH-RLHF", "beavertails": "BeaverTails"}
BENCHMARK_NAMES = {"mmlu": "MMLU", "bbh": "BBH", "alpaca_eval": "AlpacaEval", "realtoxicity": "RT",
                   "red_instruct": "Red-Instruct"}
MERGE_NAMES = {"slerp": "Slerp", "dare_ties": "DARE", "dare_linear": "DARE-linear", "ties": "TIES",
               "linear": "Linear", "task_arithmetic": "TaskArith"}


@dataclass(frozen=True)
class PaperCell:
    table: str
    model: str                # paper name
    dataset: str              # our name
    peft: str
    preference: str
    method: str
    merge_method: str | None
    benchmark: str
    value: float


def _f(text: str) -> float:
    return float(text.replace("−", "-"))


def _table2() -> list[PaperCell]:
    # Model | Variant | SFT MMLU BBH RT | DPO MMLU BBH RT
    text = """
    Mistral-7b original 0.590 0.395 1.255 0.590 0.395 1.255
    Mistral-7b harmless 0.583 0.409 1.863 0.590 0.402 −3.701
    Mistral-7b helpful 0.589 0.417 1.571 0.594 0.418 −9.375
    Mistral-7b harmless+helpful 0.575 0.408 1.239 0.593 0.412 −9.419
    Mistral-7b-Ins original 0.535 0.385 1.273 0.535 0.385 1.273
    Mistral-7b-Ins harmless 0.518 0.366 1.981 0.529 0.392 3.520
    Mistral-7b-Ins helpful 0.519 0.371 1.145 0.535 0.382 2.170
    Mistral-7b-Ins harmless+helpful 0.518 0.367 0.991 0.531 0.374 −0.025
    """
    cells = []
    for line in text.strip().splitlines():
        model, pref, *vals = line.split()
        for i, v in enumerate(vals):
            method = ("sft", "dpo")[i // 3]
            bench = ("mmlu", "bbh", "realtoxicity")[i % 3]
            cells.append(PaperCell("table2", model, "beavertails", "qlora", pref, method, None, bench, _f(v)))
    return cells


def _table3() -> list[PaperCell]:
    # Merge | Mistral-7b: BBH AlpacaEval RT | Mistral-7b-Ins: MMLU AlpacaEval RT (header as printed)
    text = """
    harmless sft - 0.409 7.346 1.863 0.518 7.711 1.981
    helpful sft - 0.417 7.081 1.571 0.519 8.095 1.145
    harmless dpo - 0.402 3.975 −3.701 0.529 13.043 3.520
    helpful dpo - 0.418 3.602 −9.375 0.535 15.299 2.170
    merged sft slerp 0.415 2.236 −9.115 0.530 8.966 3.311
    merged dpo slerp 0.425 7.721 1.604 0.524 8.209 1.873
    merged sft dare_ties 0.419 7.472 1.870 0.525 8.209 2.207
    merged dpo dare_ties 0.428 2.981 −8.602 0.534 15.702 3.717
    merged dpo+sft dare_ties 0.432 6.468 1.755 0.538 9.363 2.938
    """
    cells = []
    cols = [("Mistral-7b", "bbh"), ("Mistral-7b", "alpaca_eval"), ("Mistral-7b", "realtoxicity"),
            ("Mistral-7b-Ins", "mmlu"), ("Mistral-7b-Ins", "alpaca_eval"), ("Mistral-7b-Ins", "realtoxicity")]
    for line in text.strip().splitlines():
        pref, method, merge, *vals = line.split()
        for (model, bench), v in zip(cols, vals, strict=True):
            cells.append(PaperCell("table3", model, "beavertails", "qlora", pref, method,
                                   None if merge == "-" else merge, bench, _f(v)))
    return cells


_T45_BENCH = [(b, m) for b in ("bbh", "mmlu", "alpaca_eval", "realtoxicity") for m in ("sft", "dpo")]
_T45_MODELS = {"Mistral-7b-Ins": "Mistral-7b-Ins", "Mistral-7b": "Mistral-7b", "LLaMA-1": "LLaMA-1",
               "Vicuna-v1.3": "Vicuna-v1.3"}


def _table45(table: str, dataset: str, peft: str, text: str) -> list[PaperCell]:
    # Model-Preference | BBH S D | MMLU S D | AlpacaEval S D | RT S D
    cells = []
    for line in text.strip().splitlines():
        label, *vals = line.split()
        model, _, pref = label.rpartition("-")
        for (bench, method), v in zip(_T45_BENCH, vals, strict=True):
            cells.append(PaperCell(table, _T45_MODELS[model], dataset, peft, pref.lower(), method, None, bench, _f(v)))
    return cells


_T4_HH = """
Mistral-7b-Ins-Harmless .356 .378 .507 .527 2.239 4.738 .533 2.662
Mistral-7b-Ins-Helpful .354 .380 .502 .530 2.488 8.853 .563 1.907
Mistral-7b-Harmless .402 .149 .554 .484 .871 .498 .882 3.199
Mistral-7b-Helpful .408 .397 .571 .583 2.369 3.095 1.055 3.234
LLaMA-1-Harmless .316 .223 .302 .316 .249 .248 1.222 2.381
LLaMA-1-Helpful .322 .280 .338 .325 .373 2.224 1.224 1.352
Vicuna-v1.3-Harmless .314 .331 .419 .460 2.236 9.559 .033 4.682
Vicuna-v1.3-Helpful .331 .335 .435 .456 3.731 8.577 1.639 1.884
"""
_T4_BT = """
Mistral-7b-Ins-Harmless .366 .392 .518 .529 7.711 13.043 1.981 3.520
Mistral-7b-Ins-Helpful .371 .382 .519 .535 8.095 15.299 1.145 2.170
Mistral-7b-Harmless .409 .402 .583 .590 7.346 3.975 1.863 −3.701
Mistral-7b-Helpful .417 .418 .589 .594 7.081 3.602 1.571 −9.375
LLaMA-1-Harmless .321 .304 .341 .328 2.857 1.370 2.008 3.364
LLaMA-1-Helpful .326 .311 .355 .339 3.975 2.864 1.907 2.098
Vicuna-v1.3-Harmless .345 .358 .453 .468 9.689 9.955 2.246 4.711
Vicuna-v1.3-Helpful .348 .355 .449 .465 8.820 11.940 1.876 2.510
"""
_T5_BT = """
Mistral-7b-Ins-Harmless .363 .384 .515 .522 10.323 13.699 1.975 5.117
Mistral-7b-Ins-Helpful .373 .379 .517 .529 12.313 19.006 .862 2.206
Mistral-7b-Harmless .414 .413 .582 .585 6.733 5.853 1.587 .641
Mistral-7b-Helpful .419 .415 .584 .594 8.864 5.970 1.261 −9.369
LLaMA-1-Harmless .312 .308 .342 .323 4.608 .994 1.739 3.204
LLaMA-1-Helpful .307 .320 .354 .330 4.857 2.989 1.655 1.588
Vicuna-v1.3-Harmless .342 .332 .450 .454 11.180 13.292 2.007 5.367
Vicuna-v1.3-Helpful .343 .335 .451 .453 12.422 20.449 1.703 3.231
"""

TITLES = {
    "table2": "Table 2: BeaverTails, QLoRA: original, harmless, helpful and mixture (MMLU, BBH, RT)",
    "table3": "Table 3: merges of harmless and helpful models, BeaverTails, QLoRA",
    "table4": "Table 4: QLoRA, HH-RLHF and BeaverTails, SFT vs DPO",
    "table5": "Table 5: LoRA, BeaverTails, SFT vs DPO",
}

CELLS: tuple[PaperCell, ...] = tuple(
    _table2() + _table3()
    + _table45("table4", "hh-rlhf", "qlora", _T4_HH) + _table45("table4", "beavertails", "qlora", _T4_BT)
    + _table45("table5", "beavertails", "lora", _T5_BT))


def lookup() -> dict[tuple, float]:
    """(model, dataset, peft, preference, method, merge_method, benchmark) → the paper's number.
    Tables 2-4 repeat some cells with identical values; any table's copy serves."""
    return {(c.model, c.dataset, c.peft, c.preference, c.method, c.merge_method, c.benchmark): c.value
            for c in CELLS}
