"""report.html: one self-contained page (tables inline, plots as base64 PNGs) to open anywhere."""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any

from alignkit.collect.prune import human
from alignkit.collect.study import Study
from alignkit.collect.summary import HTML_STYLE, Table
from alignkit.contract import paths


def _states(study: Study) -> Table:
    counts: dict[str, dict[str, int]] = {}
    for j in study.jobs.values():
        counts.setdefault(j.stage, {}).setdefault(j.state, 0)
        counts[j.stage][j.state] += 1
    states = ["done", "running", "pending", "failed", "missing"]
    rows = [[stage] + [str(counts[stage].get(s, 0)) for s in states] + [str(sum(counts[stage].values()))]
            for stage in ("train", "eval", "judge", "merge") if stage in counts]
    return Table("Jobs by state (from the files on disk)", ["stage", *states, "total"], rows, slug="states")


def _best_table(best: list[dict[str, Any]], metric: str) -> Table:
    rows = [[b["name"], b["checkpoint"], str(b["step"] if b["step"] is not None else ""), f"{b['value']:.4f}",
             human(b["bytes"]), b["path"]] for b in best]
    return Table(f"Best checkpoint per run by {metric}", ["run", "checkpoint", "step", metric, "size", "path"], rows,
                 slug="best")


_SACCT_FAILED = ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED")


def failures(study: Study) -> Table | None:
    """Failed jobs with their one-line reason (error.json, docs/contract.md), or sacct's state when
    the job died before it could write one (killed, out of memory, time limit)."""
    rows = []
    for j in study.jobs.values():
        err = j.results.get(paths.ERROR) or {}
        if j.state == "failed":
            rows.append([j.stage, j.name, str(err.get("type") or ""), str(err.get("reason") or "(no reason)"), j.id])
        elif j.state != "done" and (j.slurm_state or "").split(" ")[0] in _SACCT_FAILED:
            rows.append([j.stage, j.name, f"sacct {j.slurm_state}", "ended without error.json (killed?)", j.id])
    if not rows:
        return None
    rows.sort(key=lambda r: (r[0], r[1]))
    return Table(f"Failures ({len(rows)})", ["stage", "job", "type", "reason", "id"], rows,
                 "From each failed job's error.json; `alignkit logs <id>` shows its output.", "failures")


def _img(p: Path) -> str:
    b64 = base64.b64encode(p.read_bytes()).decode("ascii")
    return f"<h4>{html.escape(p.name)}</h4><img alt='{html.escape(p.name)}' src='data:image/png;base64,{b64}'>"


REPORT_STYLE = """
nav.toc{background:#f7f7f7;border:1px solid #ddd;padding:0.4em 1.2em;display:inline-block}
nav.toc ul{margin:0.2em 0;padding-left:1.2em} nav.toc li{margin:0.1em 0}
td.better{background:#d9f2d9} td.worse{background:#f8d7d7} td.same{color:#666} td.mixed{background:#fff1c9}
table.findings td,table.findings th{text-align:left} table.findings tr.first td{border-top:2px solid #999}
"""


def write_report(path: Path, study: Study, tables: list[Table], plots: list[Path], best: list[dict[str, Any]] | None,
                 metric: str | None, index_bytes: int, n_index: int, files: list[str], findings: Any = None,
                 training: Table | None = None, curves: list[Path] | None = None,
                 selection: Table | None = None) -> Path:
    """Findings first, then the selection (a study with `select:`), failures, job states, tables,
    training, plots, best checkpoints, problems."""
    from alignkit.collect import findings_report
    from alignkit.fsio import atomic_write_text

    curves = curves or []
    fail = failures(study)
    toc: list[tuple[str, str, list[tuple[str, str]]]] = []
    body: list[str] = []
    if findings is not None:
        sub = ([("takeaways", "The paper's takeaways")] if findings.takeaways is not None else []) + \
            [("comparisons", f"Comparisons ({len(findings.comparisons)})")]
        toc.append(("findings", "Findings", sub))
        body.append(findings_report.html_section(findings))
    if selection is not None:
        toc.append(("selection", "Selection", []))
        body.append(selection.html().replace("<h3 ", "<h2 ", 1).replace("</h3>", "</h2>", 1))
    if fail:
        toc.append(("failures", fail.title, []))
        body.append(fail.html().replace("<h3 ", "<h2 ", 1).replace("</h3>", "</h2>", 1))
    toc.append(("results", "Results", [("states", "Jobs by state")] + [(t.slug, t.title) for t in tables]))
    body.append("<h2 id='results'>Results</h2>" + _states(study).html() + "".join(t.html() for t in tables))
    if training is not None or curves:
        toc.append(("training-curves", "Training", [(p.stem, p.name) for p in curves]))
        body.append("<h2 id='training-curves'>Training</h2>" + (training.html() if training else "")
                    + "".join(f"<div id='{html.escape(p.stem)}'>{_img(p)}</div>" for p in curves))
    if plots:
        toc.append(("plots", "Plots", [(p.stem, p.name) for p in plots]))
        body.append("<h2 id='plots'>Plots</h2>"
                    + "".join(f"<div id='{html.escape(p.stem)}'>{_img(p)}</div>" for p in plots))
    if best and metric:
        toc.append(("best", "Best checkpoints", []))
        body.append(_best_table(best, metric).html())
    if study.problems:
        toc.append(("problems", f"Problems ({len(study.problems)})", []))
        body.append(f"<h2 id='problems'>Problems ({len(study.problems)}): files skipped</h2><ul class='problems'>"
                    + "".join(f"<li>{html.escape(p.path)}: {html.escape(p.reason)}</li>" for p in study.problems)
                    + "</ul>")
    toc.append(("files", "Files", []))
    body.append("<h2 id='files'>Files</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in files) + "</ul>")

    def link(slug: str, title: str) -> str:
        return f"<a href='#{html.escape(slug)}'>{html.escape(title)}</a>"

    nav = "<nav class='toc'><b>Contents</b><ul>" + "".join(
        f"<li>{link(s, t)}" + ("<ul>" + "".join(f"<li>{link(a, b)}</li>" for a, b in sub) + "</ul>" if sub else "")
        + "</li>" for s, t, sub in toc) + "</ul></nav>"
    head = (f"<h1>{html.escape(study.name)}: results</h1>"
            f"<p class='note'>{html.escape(str(study.root))} · collected {time.strftime('%Y-%m-%d %H:%M:%S')} · "
            f"accounting: {html.escape(study.accounting)} · checkpoint index: {n_index} adapters/models, "
            f"{human(index_bytes)}</p>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(study.name)}</title>"
            f"<style>{HTML_STYLE}{REPORT_STYLE}</style></head><body>{head}{nav}{''.join(body)}</body></html>")
    from alignkit.textsafe import no_bidi

    atomic_write_text(path, no_bidi(page))  # a label's RTL override shows as [U+202E], not reordered text
    return path
