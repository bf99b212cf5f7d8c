"""Conformance of every dataset format (alignkit/plugins/formats/, one module per format, found by
scanning the package), no list to edit: the spec accepts exactly the registered formats (and
`auto`), each converts through the one `convert(ds, label, part)` interface, and rows lacking the
format's fields are one line naming the part and the missing field (a RowError, which the job
raises as its JobFailure), never a KeyError deep in `datasets`."""

from __future__ import annotations

import inspect

import pytest

from alignkit.plugins import formats
from jobs.data.report import PartReport

NAMES = formats.names()


def test_the_spec_accepts_exactly_the_registered_formats(tmp_path):
    from alignkit.contract.schema import Problems
    from alignkit.contract.sections import DatasetSpec
    from alignkit.spec.checks import _check_dataset

    for name in [formats.AUTO, *NAMES, "alpaca"]:
        problems = Problems("spec.yaml", {})
        _check_dataset(None, DatasetSpec(source="org/d", format=name), "datasets.d", problems)
        refused = any("unknown data format" in str(p) for p in problems.items)
        assert refused == (name == "alpaca"), (name, problems.items)


@pytest.mark.parametrize("name", NAMES)
def test_one_convert_interface(name):
    module = formats.get(name)
    assert module.__name__ == f"alignkit.plugins.formats.{name}"
    assert list(inspect.signature(module.convert).parameters) == ["ds", "label", "part"]
    assert module.ROWS in formats.ROW_TYPES
    known = getattr(module, "PREFERENCES", None)
    assert known is None or (isinstance(known, tuple) and known), "PREFERENCES: the preferences the format derives"


@pytest.mark.parametrize("name", NAMES)
def test_rows_without_the_formats_fields_are_one_line(name):
    import datasets

    ds = datasets.Dataset.from_list([{"unrelated": "x"}])
    with pytest.raises(formats.RowError) as exc:
        formats.get(name).convert(ds, "part-a", PartReport("p", "src"))
    msg = str(exc.value)
    assert msg.startswith("part-a: field '") and "missing" in msg and "\n" not in msg
