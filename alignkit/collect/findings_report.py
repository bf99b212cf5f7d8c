"""Findings as Markdown (findings.md), JSON (findings.json) and the HTML section report.html opens with."""

from __future__ import annotations

import html
from typing import Any

from alignkit.collect import stats
from alignkit.collect.findings import (BETTER, SAME, TABLE_CORRECTION, TAKEAWAY_CORRECTION, WORSE, Comparison,
                                       Findings)
from alignkit.collect.summary import fmt
from alignkit.contract.textsafe import md_cell

METHOD_NOTE = ("Each row: A − B at the checkpoint (the benchmark's primary metric), averaged over the "
               "contexts (cells of every other axis) where both exist, with a 95% interval and a two-sided "
               "p-value: paired t over seeds when the cells share seeds, else Welch's t (degrees of freedom "
               f"shown). p-values are adjusted by {TABLE_CORRECTION} across all the rows of this table "
               f"(false discovery rate {stats.ALPHA:g}). Verdict: better/worse when the adjusted p < "
               f"{stats.ALPHA:g}, by the metric's direction (↑ higher is better, ↓ lower is better); "
               "\"no detectable difference\" otherwise; no test with fewer than "
               f"{stats.MIN_SEEDS} seeds or when every seed difference is equal (zero variance). A merge is "
               "compared with each of its inputs on its own, never with the input that looks best on the "
               "same seeds. Evaluated targets (`targets:`) have no seeds: two are compared over the items both "
               "scored (paired t), else by z on their reported stderrs. The interval is each row's own 95% "
               "interval (not adjusted).")
TAKEAWAY_NOTE = (f"Each takeaway's benchmarks are one family, corrected by {TAKEAWAY_CORRECTION} (adjusted p shown). "
                 "supported: better on at least one benchmark and worse on none; contradicted: the reverse; "
                 "mixed: both; not detectable: no benchmark shows a difference; not testable: the study "
                 "lacks the cells (the comparison is listed with what it needs).")


def _arrow(c: Comparison) -> str:
    return {True: "↑", False: "↓"}.get(c.higher_is_better, "?")


def _ci(c: Comparison) -> str:
    iv = c.interval
    ci = f" [{fmt(iv.low)}, {fmt(iv.high)}]" if iv.low is not None else ""
    return f"{iv.estimate:+.3f}{ci}" if abs(iv.estimate) < 100 else f"{iv.estimate:+.1f}{ci}"


def _p(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def _cells(c: Comparison) -> list[str]:
    return [f"{c.benchmark} {c.metric} {_arrow(c)}", f"{c.a}: {fmt(c.mean_a)}", f"{c.b}: {fmt(c.mean_b)}", _ci(c),
            f"{_p(c.interval.p)} / {_p(c.p_adjusted)}", c.verdict, f"{c.contexts}×{c.seeds}", c.interval.test]


def per_benchmark(evidence: list[Comparison]) -> str:
    return ", ".join(f"{c.benchmark}: {c.verdict} (p adj. {_p(c.p_adjusted)})" for c in evidence) or "no matching cells"


COLUMNS = ["question", "benchmark", "A", "B", "A − B [95% CI]", "p / p adj.", "verdict", "contexts×seeds", "test"]


def _grouped(comps: list[Comparison]) -> list[list[str]]:
    rows, last = [], None
    for c in comps:
        rows.append([c.section if c.section != last else ""] + _cells(c))
        last = c.section
    return rows


def markdown(f: Findings, title: str) -> str:
    out = [f"# {md_cell(title)}: findings", "", f"Axes read from the study: {md_cell(', '.join(f.axes) or 'none')}.",
           ""]
    out += _checkpoint_markdown(f, "##")
    for e in f.earlier:   # the same questions, the same corrections, at each evaluated intermediate step
        out += [f"## At checkpoint {e.checkpoint}", ""] + _checkpoint_markdown(e, "###")
    return "\n".join(out) + "\n"


def _checkpoint_markdown(f: Findings, h: str) -> list[str]:
    out: list[str] = []
    if f.takeaways is not None:
        out += [f"{h} The paper's takeaways in this study's data", "", TAKEAWAY_NOTE, "",
                "| claim | verdict | per benchmark | compared |", "|---|---|---|---|"]
        for t in f.takeaways:
            per = per_benchmark(t.evidence)
            out.append(f"| {md_cell(t.claim)} | **{md_cell(t.verdict)}** | {md_cell(per)} | {md_cell(t.how)} |")
        out.append("")
    out += [f"{h} Comparisons", "", METHOD_NOTE, ""]
    if not f.comparisons:
        out += ["No axis has two values with matched results yet.", ""]
    else:
        out += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(md_cell(x) for x in row) + " |" for row in _grouped(f.comparisons)]
        out.append("")
    return out


_CLASS = {BETTER: "better", WORSE: "worse", SAME: "same", "supported": "better", "contradicted": "worse",
          "mixed": "mixed"}


def _td(text: str, cls: str = "") -> str:
    return f"<td class='{cls}'>{html.escape(text)}</td>" if cls else f"<td>{html.escape(text)}</td>"


def counts(f: Findings) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in f.comparisons:
        out[c.verdict] = out.get(c.verdict, 0) + 1
    return out


def earlier_html(f: Findings) -> str:
    """One row per evaluated checkpoint: its verdict counts and takeaway verdicts (findings.md has the tables)."""
    claims = [t.claim for t in f.takeaways or []]
    head = "<th>checkpoint</th><th>comparisons</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in claims)
    body = []
    for e in [*f.earlier, f]:
        n = ", ".join(f"{k} {v}" for v, k in sorted(counts(e).items()))
        tk = {t.claim: t.verdict for t in e.takeaways or []}
        body.append("<tr>" + _td(e.checkpoint) + _td(n) + "".join(_td(tk.get(c, "—"), _CLASS.get(tk.get(c, ""), ""))
                                                                 for c in claims) + "</tr>")
    return ("<h3 id='findings-checkpoints'>At every evaluated checkpoint</h3><p class='note'>The same comparisons "
            "and corrections at each checkpoint (each checkpoint its own family); findings.md has every table."
            f"</p><div class='scroll'><table class='findings'><thead><tr>{head}</tr></thead><tbody>"
            + "".join(body) + "</tbody></table></div>")


def as_json(f: Findings) -> dict[str, Any]:
    return f.as_dict()
