"""Preference datasets in one normalized form: TRL's conversational preference format.

`load_preferences(dataset, preference, seed)` reads the resolved dataset config of
docs/contract.md and returns a `datasets.Dataset` with columns
  prompt    [{role, content}, ...] ending with a user turn
  chosen    [{role: "assistant", content}]
  rejected  [{role: "assistant", content}]
Adapters (one module each) turn a raw schema into these rows: `hh_rlhf` (Anthropic/hh-rlhf
transcripts), `beavertails` (PKU-SafeRLHF pairs with safety labels), `normalized` (users' own
data already in this form). Several preferences make a mixture: parts are concatenated, then
shuffled with the seed, then cut to `limit`. A single preference is shuffled the same way, so
`limit` takes a random sample rather than the file's first rows.
"""

from __future__ import annotations

from typing import Any

from jobs.data import beavertails, hh_rlhf, normalized
from jobs.data.report import DropReport, PartReport
from jobs.data.source import load_split
from jobs.errors import JobFailure

ADAPTERS = {"hh_rlhf": hh_rlhf, "beavertails": beavertails, "normalized": normalized}
PREFERENCES = ("helpful", "harmless")
# Anthropic/hh-rlhf's folders, used when an hh_rlhf dataset gives no `subsets`
HH_SUBSETS = {"helpful": "helpful-base", "harmless": "harmless-base"}

__all__ = ["DropReport", "PartReport", "load_preferences", "load_preferences_with_report", "sft_rows"]


def _data_dirs(dataset: dict, preference: list[str]) -> dict[str, str | None]:
    """preference -> data_dir to read it from (None: the source's top level)."""
    subsets = dataset.get("subsets")
    if subsets is None and dataset["format"] == "hh_rlhf":
        subsets = HH_SUBSETS
    if subsets is None:
        return {p: None for p in preference}
    missing = [p for p in preference if p not in subsets]
    if missing:
        raise JobFailure(f"dataset {dataset.get('name')}: subsets has no entry for preference {missing[0]!r} "
                         f"(it has: {', '.join(sorted(subsets))})")
    return {p: subsets[p] for p in preference}


def load_preferences_with_report(dataset: dict, preference: list[str], seed: int) -> tuple[Any, DropReport]:
    """The normalized preference dataset and the report of what was read, kept and dropped."""
    import datasets

    fmt = dataset.get("format")
    if fmt not in ADAPTERS:
        raise JobFailure(f"dataset {dataset.get('name')}: unknown format {fmt!r} "
                         f"(expected one of {', '.join(ADAPTERS)})")
    if not preference or any(p not in PREFERENCES for p in preference):
        raise JobFailure(f"dataset {dataset.get('name')}: preference must list some of "
                         f"{', '.join(PREFERENCES)}, got {preference!r}")
    adapter = ADAPTERS[fmt]
    dirs = _data_dirs(dataset, preference)
    report, rows = DropReport(), []
    raw_by_dir: dict[str | None, tuple[Any, str]] = {}
    seen: set = set()
    for pref in preference:
        # A format whose rows do not depend on the preference (hh_rlhf, normalized) converts each
        # data_dir once: two preferences mapped to the same data are the same rows, not a mixture.
        key = (dirs[pref], pref if fmt == "beavertails" else None)
        if key in seen:
            continue
        seen.add(key)
        if dirs[pref] not in raw_by_dir:
            raw_by_dir[dirs[pref]] = load_split(dataset, dirs[pref])
        raw, label = raw_by_dir[dirs[pref]]
        part = PartReport(preference=pref, source=label)
        rows += adapter.convert(raw, label, part)
        report.parts.append(part)
    if not rows:
        raise JobFailure(f"dataset {dataset.get('name')}: no usable rows ({report.summary()})")
    ds = datasets.Dataset.from_list(rows).shuffle(seed=seed)
    limit = dataset.get("limit")
    if limit is not None:
        if limit > len(ds):
            raise JobFailure(f"dataset {dataset.get('name')}: limit {limit} is more than the "
                             f"{len(ds)} usable rows ({report.summary()})")
        ds = ds.select(range(limit))
    report.total = len(ds)
    return ds.flatten_indices(), report


def load_preferences(dataset: dict, preference: list[str], seed: int) -> Any:
    return load_preferences_with_report(dataset, preference, seed)[0]


def sft_rows(ds: Any) -> Any:
    """SFT data from preference data: TRL's conversational prompt/completion form, the completion
    being the chosen (final) response. The loss is then on that response only; earlier assistant
    turns of a multi-turn transcript are context, as in DPO (docs/training.md)."""
    return ds.map(lambda row: {"prompt": row["prompt"], "completion": row["chosen"]},
                  remove_columns=ds.column_names)
