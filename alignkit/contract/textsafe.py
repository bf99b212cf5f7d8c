"""Text that a person reads or a spreadsheet opens: values from a spec or a job, made inert.

- `no_bidi`: Unicode bidirectional controls (U+202A-U+202E, U+2066-U+2069, U+200E/F, U+061C) reorder
  the text around them on screen (an RTL override makes `exe.txt` read `txt.exe`); each becomes a
  visible `[U+202E]`. Applied to every human-facing output: summary.md, findings.md, the CSVs,
  report.html/summary.html and the terminal tables of status and plan.
- `csv_cell`: a text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula
  to Excel/LibreOffice/Sheets (CSV injection); OWASP's advice is to prefix it with `'`, which the
  spreadsheet shows as text. Only CSV gets this: Parquet, JSON and the tidy table in memory stay exact.
- `md_cell`: a value inside Markdown: HTML-significant characters become entities (a Markdown viewer
  renders raw HTML: `<img onerror>`), Markdown's inline markup is backslash-escaped, newlines folded.
"""

from __future__ import annotations

import re
from typing import Any

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_BIDI_RE = re.compile(f"[{BIDI}]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MD_SPECIAL = re.compile(r"([\\`*\[\]|~])")


def no_bidi(text: str) -> str:
    """`text` with every bidi control shown as `[U+XXXX]` instead of acting on the text around it."""
    return _BIDI_RE.sub(lambda m: f"[U+{ord(m.group()):04X}]", text) if isinstance(text, str) else text


def csv_cell(value: Any) -> Any:
    """A CSV field: text neutralised (bidi shown, a formula start prefixed with `'`); other values as given."""
    if not isinstance(value, str):
        return value
    value = no_bidi(value)
    return "'" + value if value.startswith(FORMULA_START) else value


def md_cell(value: Any) -> str:
    """`value` as inert Markdown text: no raw HTML, no links, emphasis or table breaks, no bidi controls."""
    text = no_bidi(str(value)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))
