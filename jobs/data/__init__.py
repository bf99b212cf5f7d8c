"""Preference datasets in one normalized form: TRL's conversational preference format.

`load_preferences(dataset, preference, seed)` reads the dataset section of a train config
(alignkit.contract.train.DatasetConfig, docs/contract.md) and returns a `datasets.Dataset` with
columns
  prompt    [{role, content}, ...] ending with a user turn
  chosen    [{role: "assistant", content}]
  rejected  [{role: "assistant", content}]
Formats (alignkit/plugins/formats/, one module each) turn a raw schema into these rows: `hh_rlhf`
(Anthropic/hh-rlhf transcripts), `beavertails` (PKU-SafeRLHF pairs with safety labels), `normalized`
(users' own data already in this form) and TRL's dataset types, which also give other rows: KTO's
unpaired {prompt, completion, label} and SFT's {prompt, completion}, {messages} or {text}
(docs/data.md). `format: auto` picks the format from each source's columns; a mixture's parts
must give rows of one type. Where each preference comes from: `files` (one local file/folder, or a
data_dir of a hub source, per preference), else `subsets` (a data_dir per preference, or the
format's own: hh_rlhf's SUBSETS), else the source's top level. Several preferences make a mixture: parts are
concatenated, then shuffled with the seed, then cut to `limit`. A single preference is shuffled
the same way, so `limit` takes a random sample rather than the file's first rows.

Validation (`dataset.validation`): `{split: test}` reads the same preferences from that split;
`{fraction: f, seed: s}` holds out about f of the prompts (jobs/data/split.py: by prompt, so no
prompt is on both sides; each part of a mixture on its own, before mixing) before the training rows
are shuffled and cut to `limit`, chosen by the validation seed alone, so the held-out rows are the
same for every run seed and never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from alignkit.contract.hub import is_local
from alignkit.plugins import formats
from jobs.data.report import DropReport, PartReport
from jobs.data.source import load_split
from jobs.data.split import held_out
from jobs.errors import JobFailure


__all__ = ["DropReport", "PartReport", "Preferences", "load_preferences", "load_preferences_with_report",
           "load_with_validation", "sft_rows"]


@dataclass(frozen=True)
class Where:
    """Where one preference's rows are read: a source (local path or hub id) and a data_dir in it."""

    source: str
    data_dir: Optional[str]


def _wheres(dataset: Any, preference: list[str]) -> dict[str, Where]:
    name = dataset.name
    if dataset.files is not None:
        missing = [p for p in preference if p not in dataset.files]
        if missing:
            raise JobFailure(f"dataset {name}: files has no entry for preference {missing[0]!r} "
                             f"(it has: {', '.join(sorted(dataset.files))})")
        # a local file or folder is read as it is; anything else is a data_dir of the (hub) source
        return {p: Where(dataset.files[p], None) if is_local(dataset.files[p]) else Where(dataset.source, dataset.files[p])
                for p in preference}
    subsets = dataset.subsets
    if subsets is None and dataset.format != formats.AUTO:  # a format's own folders (hh_rlhf's SUBSETS)
        subsets = getattr(formats.get(dataset.format), "SUBSETS", None)
    if subsets is None:
        return {p: Where(dataset.source, None) for p in preference}
    missing = [p for p in preference if p not in subsets]
    if missing:
        raise JobFailure(f"dataset {name}: subsets has no entry for preference {missing[0]!r} "
                         f"(it has: {', '.join(sorted(subsets))})")
    return {p: Where(dataset.source, subsets[p]) for p in preference}


def _read(dataset: Any, preference: list[str], split: str, held_out: bool = False) -> tuple[list[dict], DropReport]:
    """Every usable row of `split` for the preferences, in order, and what was kept and dropped."""
    fmt = dataset.format
    if fmt != formats.AUTO and fmt not in formats.names():
        raise JobFailure(f"dataset {dataset.name}: unknown format {fmt!r} (expected one of "
                         f"{', '.join([formats.AUTO, *formats.names()])})")
    known = None if fmt == formats.AUTO else getattr(formats.get(fmt), "PREFERENCES", None)
    if not preference or (known is not None and any(p not in known for p in preference)):
        raise JobFailure(f"dataset {dataset.name}: preference must list some of "
                         f"{', '.join(known or ('its files/subsets',))}, got {list(preference)!r}")
    wheres = _wheres(dataset, preference)
    report, rows, types = DropReport(), [], []
    raw_by_where: dict[Where, tuple[Any, str]] = {}
    seen: set = set()
    for pref in preference:
        if wheres[pref] not in raw_by_where:
            raw_by_where[wheres[pref]] = load_split(dataset, wheres[pref].data_dir, split=split,
                                                    source=wheres[pref].source, held_out=held_out)
        raw, label = raw_by_where[wheres[pref]]
        try:
            adapter = formats.get(fmt if fmt != formats.AUTO else
                                  formats.detect(raw.column_names, raw[0] if len(raw) else None, label))
            own = getattr(adapter, "PREFERENCES", None)  # a format that derives its preferences itself
            # A format whose rows do not depend on the preference (hh_rlhf, normalized) converts each
            # place once: two preferences mapped to the same data are the same rows, not a mixture.
            key = (wheres[pref], pref if own is not None else None)
            if key in seen:
                continue
            seen.add(key)
            if own is not None and pref not in own:  # format: auto found such a format
                raise JobFailure(f"dataset {dataset.name}: {label} is {adapter.__name__.rsplit('.', 1)[-1]} data, "
                                 f"whose preferences are {', '.join(own)}, not {pref!r}")
            if types and adapter.ROWS != types[0]:
                raise JobFailure(f"dataset {dataset.name}: {label} holds {adapter.ROWS} rows, another part of "
                                 f"the mixture {types[0]} rows: a mixture's parts must be of one type")
            types.append(adapter.ROWS)
            part = PartReport(preference=pref, source=label)
            rows += adapter.convert(raw, label, part)
        except (formats.RowError, formats.UnknownFormat) as exc:
            raise JobFailure(str(exc)) from None
        report.parts.append(part)
    if not rows:
        raise JobFailure(f"dataset {dataset.name}: no usable rows ({report.summary()})")
    return rows, report


@dataclass
class Preferences:
    train: Any  # datasets.Dataset: shuffled with the run seed, cut to limit
    report: DropReport
    validation: Any = None  # datasets.Dataset of held-out rows, or None
    validation_report: Optional[DropReport] = None


def load_with_validation(dataset: Any, preference: list[str], seed: int) -> Preferences:
    """The training rows and, with `dataset.validation`, the held-out rows (never among them)."""
    import datasets

    from alignkit.contract import expect
    from alignkit.contract.train import DatasetConfig

    expect(dataset, DatasetConfig, "jobs.data.load_with_validation")
    rows, report = _read(dataset, list(preference), dataset.split)
    ds = datasets.Dataset.from_list(rows)
    val = dataset.validation
    held, held_report = None, None
    if val is not None and val.split is not None:
        if val.split == (dataset.split):
            raise JobFailure(f"dataset {dataset.name}: validation.split {val.split!r} is the training split")
        held_rows, held_report = _read(dataset, list(preference), val.split, held_out=True)
        held = datasets.Dataset.from_list(held_rows)
    elif val is not None and val.fraction is not None:
        if not 0 < val.fraction < 1:
            raise JobFailure(f"dataset {dataset.name}: validation.fraction must be in (0, 1), got {val.fraction}")
        if len(ds) < 2:
            raise JobFailure(f"dataset {dataset.name}: {len(ds)} usable row(s), too few to hold out a validation set")
        sizes = [p.kept for p in report.parts]
        out = held_out(rows, sizes if sum(sizes) == len(rows) else [len(rows)], val.fraction, val.seed)
        n_held = sum(out)
        if n_held == len(rows):
            raise JobFailure(f"dataset {dataset.name}: validation.fraction {val.fraction:g} holds out all {len(rows)} "
                             "usable rows: no training rows left (use a smaller fraction)")
        held = ds.select([i for i, h in enumerate(out) if h]).flatten_indices()
        ds = ds.select([i for i, h in enumerate(out) if not h]).flatten_indices()
        held_report = DropReport(total=len(held))
    elif val is not None:
        raise JobFailure(f"dataset {dataset.name}: validation needs 'split' or 'fraction'")
    ds = ds.shuffle(seed=seed)
    if dataset.limit is not None:
        if dataset.limit > len(ds):
            raise JobFailure(f"dataset {dataset.name}: limit {dataset.limit} is more than the "
                             f"{len(ds)} usable rows{' left after holding out validation' if held is not None else ''} "
                             f"({report.summary()})")
        ds = ds.select(range(dataset.limit))
    report.total = len(ds)
    if held_report is not None:
        held_report.total = len(held)
    return Preferences(ds.flatten_indices(), report, held, held_report)


def load_preferences_with_report(dataset: Any, preference: list[str], seed: int) -> tuple[Any, DropReport]:
    """The normalized training rows and the report of what was read, kept and dropped."""
    got = load_with_validation(dataset, preference, seed)
    return got.train, got.report


def load_preferences(dataset: Any, preference: list[str], seed: int) -> Any:
    return load_preferences_with_report(dataset, preference, seed)[0]


def sft_rows(ds: Any) -> Any:
    """SFT data from preference data (alignkit/plugins/methods/sft.py `rows`)."""
    from alignkit.plugins.methods import method

    return method("sft").rows(ds)
