"""Findings as Markdown (findings.md), JSON (findings.json) and the HTML section report.html opens with."""

from __future__ import annotations

import html
from typing import Any

from alignkit.collect.findings import BETTER, SAME, WORSE, Comparison, Findings
from alignkit.collect.summary import fmt
from alignkit.textsafe import md_cell

METHOD_NOTE = ("Each row: A − B at the final checkpoint (the benchmark's primary metric), averaged over the "
               "contexts (cells of every other axis) where both exist, with a 95% interval: paired t over "
               "seeds when the cells share seeds, else a bootstrap over seeds (fixed RNG seed). Verdict: "
               "better/worse when the interval excludes 0, by the metric's direction (↑ higher is better, "
               "↓ lower is better); \"no detectable difference\" when it contains 0. Each interval is 95% on "
               "its own (no correction for the number of comparisons).")
TAKEAWAY_NOTE = ("supported: better on at least one benchmark and worse on none; contradicted: the reverse; "
                 "mixed: both; not detectable: no benchmark shows a difference; not testable: the study "
                 "lacks the cells (the comparison is listed with what it needs).")


def _arrow(c: Comparison) -> str:
    return {True: "↑", False: "↓"}.get(c.higher_is_better, "?")


def _ci(c: Comparison) -> str:
    iv = c.interval
    ci = f" [{fmt(iv.low)}, {fmt(iv.high)}]" if iv.low is not None else ""
    return f"{iv.estimate:+.3f}{ci}" if abs(iv.estimate) < 100 else f"{iv.estimate:+.1f}{ci}"


def _cells(c: Comparison) -> list[str]:
    return [f"{c.benchmark} {c.metric} {_arrow(c)}", f"{c.a}: {fmt(c.mean_a)}", f"{c.b}: {fmt(c.mean_b)}", _ci(c),
            c.verdict, f"{c.contexts}×{c.seeds}", c.interval.test]


COLUMNS = ["question", "benchmark", "A", "B", "A − B [95% CI]", "verdict", "contexts×seeds", "test"]
VERDICT_COL = COLUMNS.index("verdict")


def _grouped(comps: list[Comparison]) -> list[list[str]]:
    rows, last = [], None
    for c in comps:
        rows.append([c.section if c.section != last else ""] + _cells(c))
        last = c.section
    return rows


def markdown(f: Findings, title: str) -> str:
    out = [f"# {md_cell(title)}: findings", "", f"Axes read from the study: {md_cell(', '.join(f.axes) or 'none')}.", ""]
    if f.takeaways is not None:
        out += ["## The paper's takeaways in this study's data", "", TAKEAWAY_NOTE, "",
                "| claim | verdict | per benchmark | compared |", "|---|---|---|---|"]
        for t in f.takeaways:
            per = ", ".join(f"{c.benchmark}: {c.verdict}" for c in t.evidence) or "no matching cells"
            out.append(f"| {md_cell(t.claim)} | **{md_cell(t.verdict)}** | {md_cell(per)} | {md_cell(t.how)} |")
        out.append("")
    out += ["## Comparisons", "", METHOD_NOTE, ""]
    if not f.comparisons:
        out += ["No axis has two values with matched results yet.", ""]
    else:
        out += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(md_cell(x) for x in row) + " |" for row in _grouped(f.comparisons)]
    return "\n".join(out) + "\n"


_CLASS = {BETTER: "better", WORSE: "worse", SAME: "same", "supported": "better", "contradicted": "worse",
          "mixed": "mixed"}


def _td(text: str, cls: str = "") -> str:
    return f"<td class='{cls}'>{html.escape(text)}</td>" if cls else f"<td>{html.escape(text)}</td>"


def counts(f: Findings) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in f.comparisons:
        out[c.verdict] = out.get(c.verdict, 0) + 1
    return out


def html_section(f: Findings) -> str:
    parts = ["<h2 id='findings'>Findings</h2>",
             f"<p class='note'>Axes read from the study: {html.escape(', '.join(f.axes) or 'none')}. "
             + html.escape(", ".join(f"{n} {v}" for v, n in sorted(counts(f).items()))) + ".</p>"]
    if f.takeaways is not None:
        parts.append("<h3 id='takeaways'>The paper's takeaways in this study's data</h3>"
                     f"<p class='note'>{html.escape(TAKEAWAY_NOTE)}</p><div class='scroll'><table class='findings'>"
                     "<thead><tr><th>claim</th><th>verdict</th><th>per benchmark</th><th>compared</th></tr></thead><tbody>")
        for t in f.takeaways:
            per = ", ".join(f"{c.benchmark}: {c.verdict}" for c in t.evidence) or "no matching cells"
            parts.append("<tr>" + _td(t.claim) + _td(t.verdict, _CLASS.get(t.verdict, "")) + _td(per) + _td(t.how)
                         + "</tr>")
        parts.append("</tbody></table></div>")
    parts.append(f"<h3 id='comparisons'>Comparisons</h3><p class='note'>{html.escape(METHOD_NOTE)}</p>")
    if not f.comparisons:
        parts.append("<p>No axis has two values with matched results yet.</p>")
        return "".join(parts)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for row, c in zip(_grouped(f.comparisons), f.comparisons, strict=True):
        cls = " class='first'" if row[0] else ""
        body.append(f"<tr{cls}>" + "".join(_td(x, _CLASS.get(c.verdict, "") if i == VERDICT_COL else "")
                                           for i, x in enumerate(row)) + "</tr>")
    parts.append(f"<div class='scroll'><table class='findings'><thead><tr>{head}</tr></thead><tbody>"
                 + "".join(body) + "</tbody></table></div>")
    return "".join(parts)


def as_json(f: Findings) -> dict[str, Any]:
    return f.as_dict()
