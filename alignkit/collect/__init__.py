"""`alignkit collect`: a study's results on disk → tidy tables, summaries, plots, report, checkpoint index.

Reads only the shared filesystem (manifest, each job's result files, the journal) plus one
optional sacct call. Login-side: stdlib only at import; pyarrow and matplotlib are imported
when Parquet or PNG output is asked for.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

from alignkit.collect import findings as findings_mod
from alignkit.collect import findings_report, summary, tidy
from alignkit.collect import index as index_mod
from alignkit.collect import select as select_mod
from alignkit.collect import capped as capped_mod
from alignkit.collect.study import Study, load_study
from alignkit.contract.errors import UserError
from alignkit.contract.fsio import atomic_write_json, atomic_write_text
from alignkit.textsafe import csv_cell, no_bidi

FORMATS = ("csv", "parquet", "md", "html", "png")


def parse_formats(text: str) -> tuple[str, ...]:
    out = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise UserError(f"--format {text!r}: choose from {','.join(FORMATS)} (comma-separated)")
    return out


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN/±inf float as None: JSON has no such numbers (json.dumps would print a bare NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _configured_metrics(study: Study) -> dict[str, str]:
    out: dict[str, str] = {}
    for job in study.jobs.values():
        if job.stage in ("eval", "judge"):
            for name, b in (job.config.get("benchmarks") or {}).items():
                if isinstance(b, dict) and isinstance(b.get("metric"), str):
                    out.setdefault(name, b["metric"])
    return out


def _write_dict_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([csv_cell(c) for c in columns])  # formula starts and bidi controls made inert (alignkit/textsafe.py)
    for r in rows:
        w.writerow(["" if r.get(c) is None else csv_cell(r.get(c)) for c in columns])
    atomic_write_text(path, buf.getvalue())


def _parquet(rows: list[dict[str, Any]], out: Path, cols: tuple[str, ...]) -> Path:
    """results.parquet, rewritten only when the tidy rows changed (pyarrow's import and the write
    are most of a repeat collect's time); the key is a hash of the rows."""
    import hashlib

    path, key_path = out / "results.parquet", out / ".cache" / "results.parquet.key"
    key = hashlib.sha256(repr((cols, rows)).encode()).hexdigest()
    try:
        if path.exists() and key_path.read_text() == key:
            return path
    except OSError:
        pass
    tidy.write_parquet(rows, path, cols)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(key_path, key)
    return path


def _figures(study: Study, stats: Any, primary: dict[str, str], found: Any, out: Path):
    """Every figure (plots, training curves, one forest plot per question) through the figure
    cache: only those whose data changed are drawn, in parallel when several are."""
    from alignkit.collect import curves, figcache, forest
    from alignkit.collect import plots as plots_mod

    groups = [plots_mod.figures(stats, primary, summary.final_cells(stats, primary)), curves.figures(study),
              forest.figures([c.as_dict() for c in found.comparisons]) if found is not None else []]
    paths, drawn = figcache.render([f for g in groups for f in g], out)
    a, b = len(groups[0]), len(groups[0]) + len(groups[1])
    return paths[:a], paths[a:b], paths[b:], drawn


def collect(sweep_dir: str | Path, out: str | Path | None = None, formats: tuple[str, ...] = FORMATS,
            metric: str | None = None, accounting: bool = True, findings: bool = True) -> dict[str, Any]:
    """Write the study's findings, tables, summaries, plots, report and index under `out`; return a
    JSON-ready digest. `findings=False` skips findings.{md,json} and the report's Findings section
    (bench/collect_bench.py measures their cost)."""
    t0 = time.perf_counter()
    choice = index_mod.MetricChoice.parse(metric) if metric else None
    study = load_study(sweep_dir, accounting=accounting)
    out = Path(out) if out else study.root / "collect"
    out.mkdir(parents=True, exist_ok=True)
    extra = tidy.extra_axes(study)     # the dotted axes the manifest says were swept
    rows = tidy.build_rows(study, extra)
    primary = summary.primary_metrics(_configured_metrics(study), rows)
    stats = summary.aggregate(rows, extra)
    paper_study = summary.is_paper_study(rows)
    tables = summary.all_tables(stats, primary, paper_study)
    found = findings_mod.compute(study, rows, primary, paper_study) if findings else None
    selection = select_mod.compute(study, rows, primary)
    sel_table = select_mod.table(*selection) if selection else None
    idx = index_mod.build_index(study, extra)
    idx_cols = index_mod.index_columns(extra)
    best = None
    metric_name = None
    if choice:
        metric_name = index_mod.attach_metric(idx, rows, choice, primary)
        best = index_mod.best_per_run(idx, choice)
    files: list[Path] = []
    if found is not None:
        atomic_write_json(out / "findings.json", json_safe(findings_report.as_json(found)))
        atomic_write_text(out / "findings.md", findings_report.markdown(found, study.name))
        files += [out / "findings.json", out / "findings.md"]
    cols = tidy.columns(extra)
    if selection is not None:   # always as CSV: it is the answer the study's `select:` asked for
        _write_dict_csv(out / "selection.csv", selection[1], selection[0].columns)
        files.append(out / "selection.csv")
    if "csv" in formats:
        files.append(tidy.write_csv(rows, out / "results.csv", cols))
        _write_dict_csv(out / "summary.csv", summary.long_rows(stats),
                        [*stats.columns, "mean", "std", "n_seeds", "n_missing", "seeds"])
        _write_dict_csv(out / "checkpoints.csv", idx, idx_cols)
        files += [out / "summary.csv", out / "checkpoints.csv"]
        if best is not None:
            _write_dict_csv(out / "best_checkpoints.csv", best, idx_cols)
            files.append(out / "best_checkpoints.csv")
    if "parquet" in formats:
        files.append(_parquet(rows, out, cols))
    capped = capped_mod.rows(study)  # answers the model's context left fewer new tokens (jobs/eval/generate.py)
    if capped:
        _write_dict_csv(out / "capped.csv", capped, capped_mod.COLUMNS)
        files.append(out / "capped.csv")
    title = f"{study.name}: summary"
    if "md" in formats:
        atomic_write_text(out / "summary.md", summary.markdown(([sel_table] if sel_table else []) + tables, title))
        files.append(out / "summary.md")
    plots: list[Path] = []
    curve_plots: list[Path] = []
    drawn = 0
    if "png" in formats:
        plots, curve_plots, forest_plots, drawn = _figures(study, stats, primary, found, out / "plots")
        files += curve_plots + plots + forest_plots
    if "html" in formats:
        from alignkit.collect import curves
        from alignkit.collect.report import write_report

        atomic_write_text(out / "summary.html", no_bidi(summary.html_page(([sel_table] if sel_table else []) + tables, title)))
        files.append(out / "summary.html")
        names = [str(f.relative_to(out)) for f in files] + ["report.html", "collect.json"]
        files.append(write_report(out / "report.html", study, tables, plots, best, metric_name,
                                  sum(e["bytes"] for e in idx), len(idx), names, found, curves.table(rows, extra),
                                  curve_plots, sel_table, list(primary)))
    states: dict[str, dict[str, int]] = {}
    for j in study.jobs.values():
        states.setdefault(j.stage, {}).setdefault(j.state, 0)
        states[j.stage][j.state] += 1
    digest = {
        "sweep": study.name, "sweep_dir": str(study.root), "out": str(out),
        "files": [str(f) for f in files] + [str(out / "collect.json")],
        "rows": len(rows), "rows_with_value": sum(1 for r in rows if r["value"] is not None),
        "jobs": states, "accounting": study.accounting, "primary_metrics": primary,
        "problems": [{"path": p.path, "reason": p.reason} for p in study.problems],
        "checkpoints": {"count": len(idx), "bytes": sum(e["bytes"] for e in idx)},
        "best": [{k: b.get(k) for k in ("job_id", "name", "checkpoint", "step", "value", "path")} for b in best]
        if best is not None else None, "metric": metric_name,
        "paper_study": paper_study, "axes": [*study.axes],
        "selection": {"metric": selection[0].metric, "goal": selection[0].goal, "over": list(selection[0].over),
                      "by": list(selection[0].by), "checkpoint": selection[0].checkpoint, "groups": selection[1]}
        if selection else None,
        "findings": findings_report.counts(found) if found is not None else None,
        "awaiting_selection": study.awaiting,   # jobs a submit after this selection may add (two-phase study)
        "figures_drawn": drawn,
        "capped_answers": capped_mod.digest(capped),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    digest = json_safe(digest)
    atomic_write_json(out / "collect.json", digest)
    return digest
