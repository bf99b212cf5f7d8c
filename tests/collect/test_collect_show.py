"""`alignkit collect --show`: the summary's first table fitted to COLUMNS with status's renderer
(alignkit/status/view.py render_table), never wider than the terminal, saying what it left out."""

from __future__ import annotations

import pytest

from alignkit.cli.collect import show_lines
from alignkit.collect import collect
from alignkit.status.view import render_table
from tests.fixtures import planted_study


@pytest.fixture(scope="module")
def digest(tmp_path_factory):
    root = tmp_path_factory.mktemp("show") / "smoke"
    planted_study.smoke_shaped(root)
    return collect(root, out=root / "collect", formats=("md",), accounting=False, findings=False)


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_show_fits_the_terminal(digest, width):
    lines = show_lines(digest, width)
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    assert lines[0].startswith("All runs at the final checkpoint")
    assert "one value only: model=tiny-llama, dataset=beavertails" in lines   # not repeated on 25 rows
    header = next(line for line in lines if line.startswith("peft"))
    if width >= 200:     # room for everything: every benchmark, seeds counted
        assert header.split()[-5:] == ["bbh", "mmlu", "alpaca_eval", "realtoxicity", "red_instruct"]
        assert any("(n=2)" in line for line in lines)
    if width <= 80:      # what did not fit is named, never silently cut
        tail = " ".join(lines[next(i for i, line in enumerate(lines) if line.startswith("… ")):])
        assert "more column(s) not shown" in tail and "red_instruct" in tail


def test_render_table_cuts_labels_before_dropping_columns():
    head = ["name", "a", "b"]
    rows = [["x" * 30, "1.00", "2.00"], ["short", "3.00", "4.00"]]
    lines = render_table(head, rows, 24, clip_cols=(0,))
    assert all(len(line) <= 24 for line in lines)
    assert lines[2].startswith("x" * 11 + "…") and lines[2].endswith("1.00  2.00")
    narrow = render_table(head, rows, 16, clip_cols=(0,))
    assert all(len(line) <= 16 for line in narrow) and narrow[2] == "xxxxx…  1.00"
    assert " ".join(narrow[4:]) == "… 1 more column(s) not shown at 16 columns: b"
