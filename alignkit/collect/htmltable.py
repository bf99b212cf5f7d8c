"""Sortable, filterable tables in report.html, offline: List.js 2.3.1 (MIT, 19 KB, vendored in
alignkit/collect/vendor/ with its licence; `npm pack list.js@2.3.1`, dist/list.min.js, sha256
34456f18...) is inlined once per page, so the report works from a file:// URL with no network.

Each table is plain HTML first (readable with scripts off); List.js adds a filter box (matches any
cell) and sorting by a click on a column's header.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from alignkit.collect.summary import Table

VENDOR = Path(__file__).with_name("vendor") / "list.min.js"
STYLE = """
.ltable input.search{font-size:12px;padding:2px 6px;margin:0.2em 0;width:18em;border:1px solid #bbb;border-radius:3px}
.ltable.text td,.ltable.text th{text-align:left}
th.sort{cursor:pointer;user-select:none} th.sort:hover{background:#e4e4e4}
th.sort.asc::after{content:" \\25B2";font-size:9px} th.sort.desc::after{content:" \\25BC";font-size:9px}
"""
# Starts List.js on every .ltable (its columns in data-cols): configuration, not a table library.
INIT = ("document.querySelectorAll('div.ltable').forEach(function(e){"
        "new List(e.id,{valueNames:JSON.parse(e.dataset.cols),page:100000});});")


def _text(s: str) -> str:
    """Escaped for a text node (<, >, &); quotes stay as typed ("the paper's takeaways")."""
    return html.escape(s, quote=False)


def render(t: Table, tid: str, heading: str = "h3", cell_class: dict[int, list[str]] | None = None,
           text: bool = False) -> str:
    """`t` as an interactive table; `cell_class` gives extra classes per row for one column
    ({column index: [class per row]}, e.g. a verdict's colour); `text`: every cell left-aligned."""
    cols = [f"c{i}" for i in range(len(t.columns))]
    head = "".join(f"<th class='sort' data-sort='{c}'>{_text(name)}</th>"
                   for c, name in zip(cols, t.columns, strict=True))
    extra = cell_class or {}
    body = []
    for r, row in enumerate(t.rows):
        tds = []
        for i, cell in enumerate(row):
            cls = cols[i] + (f" {extra[i][r]}" if i in extra and extra[i][r] else "")
            tds.append(f"<td class='{cls}'>{_text(str(cell))}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    note = f"<p class='note'>{_text(t.note)}</p>" if t.note else ""
    title = f"<{heading} id='{html.escape(t.slug)}'>{_text(t.title)}</{heading}>" if t.title else ""
    filt = (f"<input class='search' placeholder='filter {len(t.rows)} rows' aria-label='filter'>"
            if len(t.rows) > 5 else "")
    return (f"{title}{note}<div class='ltable{' text' if text else ''}' id='{html.escape(tid)}' data-cols='{html.escape(json.dumps(cols))}'>"
            f"{filt}<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody class='list'>{''.join(body)}"
            "</tbody></table></div></div>")


def script() -> str:
    """The library and its start-up, once per page (at the end of <body>)."""
    return f"<script>{VENDOR.read_text(encoding='utf-8')}</script><script>{INIT}</script>"
