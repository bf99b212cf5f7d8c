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


def write_report(path: Path, study: Study, tables: list[Table], plots: list[Path], best: list[dict[str, Any]] | None,
                 metric: str | None, index_bytes: int, n_index: int, files: list[str]) -> Path:
    from alignkit.fsio import atomic_write_text

    parts = [f"<h1>{html.escape(study.name)}: results</h1>",
             f"<p class='note'>{html.escape(str(study.root))} · collected {time.strftime('%Y-%m-%d %H:%M:%S')} · "
             f"accounting: {html.escape(study.accounting)} · checkpoint index: {n_index} adapters/models, "
             f"{human(index_bytes)}</p>"]
    toc = [("states", "Jobs by state")] + [(t.slug, t.title) for t in tables]
    if plots:
        toc.append(("plots", "Plots"))
    if best:
        toc.append(("best", "Best checkpoints"))
    if study.problems:
        toc.append(("problems", f"Problems ({len(study.problems)})"))
    parts.append("<ul>" + "".join(f"<li><a href='#{html.escape(s)}'>{html.escape(t)}</a></li>" for s, t in toc)
                 + "</ul>")
    parts.append(_states(study).html())
    parts += [t.html() for t in tables]
    if plots:
        parts.append("<h2 id='plots'>Plots</h2>")
        for p in plots:
            b64 = base64.b64encode(p.read_bytes()).decode("ascii")
            parts.append(f"<h4>{html.escape(p.name)}</h4><img alt='{html.escape(p.name)}' "
                         f"src='data:image/png;base64,{b64}'>")
    if best and metric:
        parts.append(_best_table(best, metric).html())
    if study.problems:
        parts.append(f"<h2 id='problems'>Problems ({len(study.problems)}): files skipped</h2><ul class='problems'>"
                     + "".join(f"<li>{html.escape(p.path)}: {html.escape(p.reason)}</li>" for p in study.problems)
                     + "</ul>")
    parts.append("<h2>Files</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in files) + "</ul>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(study.name)}</title>"
            f"<style>{HTML_STYLE}</style></head><body>{''.join(parts)}</body></html>")
    atomic_write_text(path, page)
    return path
