"""report.html: one self-contained page that opens on the answer.

Order: the study's name, description and size, a status line (complete / partial, failures), a
banner when the models are test assets, then the findings (the paper's takeaways, one forest plot
per question, every comparison in a sortable table): all on the first screen; contents collapsed;
then selection, failures, job states, tables, training, plots, best checkpoints, problems, files.
Tables sort and filter with the vendored List.js (htmltable.py); figures are inline SVG with a
hover title per series (figcache.py); no script or font comes from the network.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from alignkit.collect import forest, htmltable
from alignkit.collect.prune import human
from alignkit.collect.study import Study
from alignkit.collect.summary import HTML_STYLE, Table
from alignkit.contract import paths
from alignkit.submit.sweepdir import MANIFEST

# A model directory holding this file is a test asset (assets/tiny-llama): its numbers mean nothing.
TEST_ASSET_MARKER = "TEST_ASSET"
STATES = ("done", "running", "pending", "failed", "missing")


def _states(study: Study) -> Table:
    counts: dict[str, dict[str, int]] = {}
    for j in study.jobs.values():
        counts.setdefault(j.stage, {}).setdefault(j.state, 0)
        counts[j.stage][j.state] += 1
    rows = [[stage] + [str(counts[stage].get(s, 0)) for s in STATES] + [str(sum(counts[stage].values()))]
            for stage in ("train", "eval", "judge", "merge") if stage in counts]
    return Table("Jobs by state (from the files on disk)", ["stage", *STATES, "total"], rows, slug="states")


def _best_table(best: list[dict[str, Any]], metric: str) -> Table:
    rows = [[b["name"], b["checkpoint"], str(b["step"] if b["step"] is not None else ""), f"{b['value']:.4f}",
             human(b["bytes"]), b["path"]] for b in best]
    return Table(f"Best checkpoint per run by {metric}", ["run", "checkpoint", "step", metric, "size", "path"], rows,
                 slug="best")


_SCHEDULER_FAILED = (  # states the scheduler's accounting gives a job that died
    "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED")


def failures(study: Study) -> Table | None:
    """Failed jobs with their one-line reason (error.json, docs/contract.md), or the accounting's state when
    the job died before it could write one (killed, out of memory, time limit)."""
    rows = []
    for j in study.jobs.values():
        err = j.results.get(paths.ERROR) or {}
        if j.state == "failed":
            rows.append([j.stage, j.name, str(err.get("type") or ""), str(err.get("reason") or "(no reason)"), j.id])
        elif j.state != "done" and (j.slurm_state or "").split(" ")[0] in _SCHEDULER_FAILED:
            # named after what answered (study.accounting: the executor's accounting, e.g. "sacct")
            rows.append([j.stage, j.name, f"{study.accounting} {j.slurm_state}", "ended without error.json (killed?)", j.id])
    if not rows:
        return None
    rows.sort(key=lambda r: (r[0], r[1]))
    return Table(f"Failures ({len(rows)})", ["stage", "job", "type", "reason", "id"], rows,
                 "From each failed job's error.json; `alignkit logs <id>` shows its output.", "failures")


# ---------------------------------------------------------------- the head of the page
def description(study: Study) -> str:
    """The spec's `description:` (manifest.json `spec_text`, the YAML as submitted)."""
    # submit writes spec_text near the top of manifest.json: read only the head (a 100k-job
    # manifest is hundreds of MB, and load_study has parsed it once already)
    try:
        with open(study.root / MANIFEST, encoding="utf-8") as f:
            head = f.read(4 << 20)
        at = head.find('"spec_text":')
        start = at + len('"spec_text":') + (len(head[at + len('"spec_text":'):]) -
                                            len(head[at + len('"spec_text":'):].lstrip()))
        text = json.JSONDecoder().raw_decode(head, start)[0] if at >= 0 else None
    except (OSError, ValueError):
        return ""
    if not isinstance(text, str) or "description" not in text:
        return ""
    import yaml

    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError:     # not YAML: the report renders without a description
        return ""
    d = spec.get("description") if isinstance(spec, dict) else None
    return " ".join(d.split()) if isinstance(d, str) else ""


def test_models(study: Study) -> list[str]:
    """Models whose local directory is marked as a test asset (a `TEST_ASSET` file)."""
    out: dict[str, None] = {}
    for j in study.of_stage("train"):
        model = j.config.get("model") or {}
        src = model.get("source")
        if isinstance(src, str) and src.startswith("/") and (Path(src) / TEST_ASSET_MARKER).is_file():
            out[str(model.get("name") or src)] = None
    return list(out)


def size_line(study: Study, benchmarks: list[str]) -> str:
    by_stage: dict[str, int] = {}
    for j in study.jobs.values():
        by_stage[j.stage] = by_stage.get(j.stage, 0) + 1
    values: dict[str, set] = {}
    for j in study.of_stage("train"):
        for a, v in j.axes.items():
            values.setdefault(a, set()).add(json.dumps(v, sort_keys=True, default=str))
    axes = ", ".join(f"{a} ({len(values[a])})" for a in study.axes if a in values)
    parts = [f"{by_stage.get('train', 0)} training runs"]
    parts += [f"{by_stage[s]} {w}" for s, w in (("eval", "evaluations"), ("merge", "merges"), ("judge", "judge jobs"))
              if by_stage.get(s)]
    text = " · ".join(parts)
    if axes:
        text += f" · axes: {axes}"
    if benchmarks:
        text += f" · benchmarks: {', '.join(benchmarks)}"
    return text


def status_line(study: Study) -> tuple[str, str]:
    """(css class, text): complete, or partial with what is missing and what failed."""
    n = len(study.jobs)
    c = {s: 0 for s in STATES}
    for j in study.jobs.values():
        c[j.state] = c.get(j.state, 0) + 1
    if c["done"] == n:
        return "complete", f"Complete: all {n} jobs done."
    rest = [f"{c[s]} {s}" for s in ("failed", "running", "pending") if c[s]]
    if c["missing"]:
        rest.append(f"{c['missing']} not started")
    cls = "failed" if c["failed"] else "partial"
    return cls, (f"Partial: {c['done']} of {n} jobs done ({', '.join(rest)}). Findings use the results on disk "
                 "now; cells with missing runs have fewer seeds.")


def _banner(models: list[str]) -> str:
    return ("<div class='banner'><b>Test model — these numbers carry no meaning.</b> "
            f"{html.escape(', '.join(models))} {'is a tiny test model' if len(models) == 1 else 'are tiny test models'}"
            " (a TEST_ASSET file in the model's directory): this study checks that the pipeline runs end to end; "
            "its verdicts say nothing about the methods compared.</div>")


# ---------------------------------------------------------------- findings
def _findings_html(found: Any) -> tuple[str, list[tuple[str, str]]]:
    from alignkit.collect import findings_report

    d = found.as_dict()
    comps = d.get("comparisons") or []
    counts: dict[str, int] = {}
    for c in comps:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    parts = ["<h2 id='findings'>Findings</h2>",
             f"<p class='note'>{len(comps)} comparisons: "
             + html.escape(", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda x: -x[1])))
             + f". Axes read from the study: {html.escape(', '.join(d.get('axes') or []) or 'none')}.</p>"]
    sub: list[tuple[str, str]] = []
    if d.get("takeaways") is not None:
        sub.append(("takeaways", "The paper's takeaways"))
        rows, cls = [], []
        for t, typed in zip(d["takeaways"], found.takeaways, strict=True):
            per = findings_report.per_benchmark(typed.evidence)  # each benchmark's verdict with its Holm p
            rows.append([t["claim"], t["verdict"], per, t["how"]])
            cls.append({"supported": "better", "contradicted": "worse", "mixed": "mixed"}.get(t["verdict"], "same"))
        note = findings_report.TAKEAWAY_NOTE
        parts.append(htmltable.render(Table("The paper's takeaways in this study's data",
                                            ["claim", "verdict", "per benchmark", "compared"], rows, note,
                                            "takeaways"), "t-takeaways", cell_class={1: cls}, text=True))
    if comps:
        sub.append(("forest", "Each question, as tested"))
        parts.append("<h3 id='forest'>Each question, as tested</h3><p class='note'>One panel per question, one row "
                     "per benchmark: the dot is A − B at the final checkpoint, the bar its 95% interval, the dashed "
                     "line no difference. Each row has its own scale, turned so that A's better side is on the right "
                     "(the words under it say what better means for that metric). Colour = verdict: "
                     "<span class='fverdict better'>better</span>, <span class='fverdict worse'>worse</span>, "
                     "<span class='fverdict same'>no detectable difference</span>. Hover a row for its numbers.</p>"
                     + forest.html_block(comps))
    sub.append(("comparisons", f"All comparisons ({len(comps)})"))
    if not comps:
        parts.append("<h3 id='comparisons'>All comparisons</h3><p>No axis has two values with matched results "
                     "yet.</p>")
        return "".join(parts), sub
    optional = [k for k in ("p", "p_adjusted", "correction", "df") if any(c.get(k) is not None for c in comps)]
    head = ["question", "benchmark", "metric", "A", "B", "mean A", "mean B", "A − B", "95% low", "95% high",
            *optional, "verdict", "contexts×seeds", "test"]
    rows, vcls = [], []
    for c in comps:
        rows.append([c["question"], c["benchmark"], f"{c['metric']} ({forest.direction_words(c['metric'], c.get('higher_is_better'))})",
                     c["a"], c["b"], _n(c.get("mean_a")), _n(c.get("mean_b")), _n(c.get("difference"), True),
                     _n(c.get("ci_low"), True), _n(c.get("ci_high"), True),
                     *[_n(c.get(k)) if k != "correction" else str(c.get(k) or "") for k in optional],
                     str(c["verdict"]), f"{c.get('contexts')}×{c.get('seeds')}", str(c.get("test") or "")])
        vcls.append(forest.verdict_class(str(c["verdict"])))
    note = findings_report.METHOD_NOTE
    parts.append(htmltable.render(Table(f"All comparisons ({len(comps)})", head, rows, note, "comparisons"),
                                  "t-comparisons", cell_class={head.index("verdict"): vcls}, text=True))
    if found.earlier:  # the same questions and corrections at each evaluated intermediate step
        sub.append(("findings-checkpoints", "At every evaluated checkpoint"))
        parts.append(findings_report.earlier_html(found))
    return "".join(parts), sub


def _n(x: Any, sign: bool = False) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool) or x != x:
        return ""
    return (f"{x:+.4g}" if sign else f"{x:.4g}")


REPORT_STYLE = """
header .desc{font-size:15px;margin:0.2em 0} header .size{color:#444;font-size:13px;margin:0.2em 0}
.status{display:inline-block;padding:2px 10px;border-radius:3px;font-size:13px;margin:0.2em 0}
.status.complete{background:#d9f2d9} .status.partial{background:#fff1c9} .status.failed{background:#f8d7d7}
.banner{background:#fff1c9;border:2px solid #e0a800;padding:0.5em 0.9em;margin:0.5em 0;font-size:14px}
details.toc{position:fixed;top:0.6em;right:0.6em;background:#f7f7f7;border:1px solid #ddd;padding:0.2em 0.8em;
 max-height:90vh;overflow:auto;font-size:13px;z-index:5;max-width:22em}
details.toc ul{margin:0.2em 0;padding-left:1.2em}
td.better{background:#d9f2d9} td.worse{background:#f8d7d7} td.same{color:#666} td.mixed{background:#fff1c9}
td.dir{background:#dbe8f7}
h1{margin:0.2em 0} h2{border-bottom:1px solid #ddd;padding-bottom:2px;margin-top:1.4em}
figure.plot{margin:0.6em 0 1.4em} figure.plot svg{max-width:100%;height:auto} figure.plot figcaption{font-size:12px;color:#555}
"""


INLINE_MAX = 250_000      # bytes of SVG inlined per figure; a larger one (hundreds of runs' curves) is linked
INLINE_BUDGET = 1_200_000  # bytes of SVG inlined per page, so a full-size report stays under 2 MB


def _figure(png: Path, report_dir: Path, budget: list[int]) -> str:
    from alignkit.collect.figcache import inline_svg

    rel = png.relative_to(report_dir).parent.as_posix() if png.is_relative_to(report_dir) else png.parent.as_posix()
    files = " · ".join(f"<a href='{html.escape(rel)}/{html.escape(png.stem)}.{f}'>{f.upper()}</a>"
                       for f in ("png", "pdf", "svg"))
    svg = png.with_suffix(".svg")
    size = svg.stat().st_size if svg.exists() else None
    if size is not None and size <= min(INLINE_MAX, budget[0]):
        budget[0] -= size
        shown, how = inline_svg(png), "hover a series for its values"
    else:
        shown = f"<img loading='lazy' alt='{html.escape(png.name)}' src='{html.escape(rel)}/{html.escape(png.name)}'>"
        how = "too large to inline: shown from the plots folder beside this page; open the SVG for hover values"
    return (f"<figure class='plot' id='{html.escape(png.stem)}'>{shown}"
            f"<figcaption>{html.escape(png.stem)} ({files}; {how})</figcaption></figure>")


def write_report(path: Path, study: Study, tables: list[Table], plots: list[Path], best: list[dict[str, Any]] | None,
                 metric: str | None, index_bytes: int, n_index: int, files: list[str], findings: Any = None,
                 training: Table | None = None, curves: list[Path] | None = None,
                 selection: Table | None = None, benchmarks: list[str] | None = None) -> Path:
    from alignkit.contract.fsio import atomic_write_text

    curves = curves or []
    budget = [INLINE_BUDGET]
    fail = failures(study)
    toc: list[tuple[str, str, list[tuple[str, str]]]] = []
    body: list[str] = []
    if findings is not None:
        text, sub = _findings_html(findings)
        toc.append(("findings", "Findings", sub))
        body.append(text)
    if selection is not None:
        toc.append(("selection", "Selection", []))
        body.append(htmltable.render(selection, "t-selection", "h2"))
    if fail:
        toc.append(("failures", fail.title, []))
        body.append(htmltable.render(fail, "t-failures", "h2", text=True))
    toc.append(("results", "Results", [("states", "Jobs by state")] + [(t.slug, t.title) for t in tables]))
    body.append("<h2 id='results'>Results</h2>" + _states(study).html()
                + "".join(htmltable.render(t, f"t-{t.slug or i}") for i, t in enumerate(tables)))
    if training is not None or curves:
        toc.append(("training-curves", "Training", [(p.stem, p.stem) for p in curves]))
        body.append("<h2 id='training-curves'>Training</h2>"
                    + (htmltable.render(training, "t-training") if training else "")
                    + "".join(_figure(p, path.parent, budget) for p in curves))
    if plots:
        toc.append(("plots", "Plots", [(p.stem, p.stem) for p in plots]))
        body.append("<h2 id='plots'>Plots</h2>" + "".join(_figure(p, path.parent, budget) for p in plots))
    if best and metric:
        toc.append(("best", "Best checkpoints", []))
        body.append(htmltable.render(_best_table(best, metric), "t-best", "h2"))
    if study.problems:
        toc.append(("problems", f"Problems ({len(study.problems)})", []))
        body.append(f"<h2 id='problems'>Problems ({len(study.problems)}): files skipped</h2><ul class='problems'>"
                    + "".join(f"<li>{html.escape(p.path)}: {html.escape(p.reason)}</li>" for p in study.problems)
                    + "</ul>")
    toc.append(("files", "Files", []))
    body.append("<h2 id='files'>Files</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in files) + "</ul>")

    def link(slug: str, title: str) -> str:
        return f"<a href='#{html.escape(slug)}'>{html.escape(title)}</a>"

    nav = "<details class='toc'><summary>Contents</summary><ul>" + "".join(
        f"<li>{link(s, t)}" + ("<ul>" + "".join(f"<li>{link(a, b)}</li>" for a, b in sub) + "</ul>" if sub else "")
        + "</li>" for s, t, sub in toc) + "</ul></details>"
    desc = description(study)
    cls, status = status_line(study)
    tiny = test_models(study)
    head = (f"<header><h1>{html.escape(study.name)}</h1>"
            + (f"<p class='desc'>{html.escape(desc)}</p>" if desc else "")
            + f"<p class='size'>{html.escape(size_line(study, benchmarks or []))}</p>"
            + f"<p class='status {cls}'>{html.escape(status)}"
            + (f" <a href='#failures'>{len(fail.rows)} failed: reasons below</a>" if fail else "") + "</p>"
            + (_banner(tiny) if tiny else "")
            + f"<p class='note'>{html.escape(str(study.root))} · collected {time.strftime('%Y-%m-%d %H:%M:%S')} · "
              f"accounting: {html.escape(study.accounting)} · checkpoint index: {n_index} adapters/models, "
              f"{human(index_bytes)}</p></header>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(study.name)}</title>"
            f"<style>{HTML_STYLE}{REPORT_STYLE}{forest.STYLE}{htmltable.STYLE}</style></head><body>{head}{nav}"
            f"{''.join(body)}{htmltable.script()}</body></html>")
    from alignkit.contract.textsafe import no_bidi

    atomic_write_text(path, no_bidi(page))  # a label's RTL override shows as [U+202E], not reordered text
    return path
