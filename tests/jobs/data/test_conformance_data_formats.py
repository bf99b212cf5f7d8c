"""Conformance of every dataset format (jobs/data: ADAPTERS, one module per format), no list to edit:
the spec accepts exactly the formats the job can read, each adapter converts through the one
`convert(ds, label, part)` interface, and rows lacking the format's fields are a one-line JobFailure
naming the part and the missing field (never a KeyError deep in `datasets`)."""

from __future__ import annotations

import inspect
import typing

import pytest

from jobs.data import ADAPTERS
from jobs.data.report import PartReport
from jobs.errors import JobFailure

NAMES = sorted(ADAPTERS)


def test_the_spec_accepts_exactly_the_formats_the_job_reads():
    from alignkit.contract.train import DatasetConfig

    spec_formats = set(typing.get_args(typing.get_type_hints(DatasetConfig)["format"]))
    assert spec_formats == set(ADAPTERS)


@pytest.mark.parametrize("name", NAMES)
def test_one_convert_interface(name):
    adapter = ADAPTERS[name]
    assert adapter.__name__ == f"jobs.data.{name}"
    assert list(inspect.signature(adapter.convert).parameters) == ["ds", "label", "part"]
    known = getattr(adapter, "PREFERENCES", None)
    assert known is None or (isinstance(known, tuple) and known), "PREFERENCES: the preferences the format derives"


@pytest.mark.parametrize("name", NAMES)
def test_rows_without_the_formats_fields_are_one_line(name):
    import datasets

    ds = datasets.Dataset.from_list([{"unrelated": "x"}])
    with pytest.raises(JobFailure) as exc:
        ADAPTERS[name].convert(ds, "part-a", PartReport("p", "src"))
    msg = str(exc.value)
    assert msg.startswith("part-a: field '") and "missing" in msg and "\n" not in msg
