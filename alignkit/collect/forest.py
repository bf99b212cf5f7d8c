"""Findings drawn as they are tested: one forest plot per question (A − B with its 95% interval,
a zero line, the verdict's colour, the metric's direction in words).

Drawn from `Comparison.as_dict()` only (findings.py owns the statistics): `question`, `a`, `b`,
`benchmark`, `metric`, `higher_is_better`, `difference`, `ci_low`, `ci_high`, `verdict`, ...; the
optional `p`, `p_adjusted`, `correction`, `df` are shown when present.

Two renderings of the same rows:
  html()     for report.html: plain HTML/CSS (no script, a few hundred bytes a row), each row on its
             own scale with zero in the middle and the axis turned so that "A better" is always to
             the right; hovering a row shows its numbers (the `title` attribute).
  figures()  forest_<question>.png/.pdf for papers (matplotlib, through the figure cache).
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

# What "better" means for a metric, in words; unknown metrics get "higher/lower <metric>".
PLAIN = {"acc": "more accurate", "acc_norm": "more accurate", "exact_match": "more exact answers",
         "f1": "higher F1", "win_rate": "wins more often", "lc_win_rate": "wins more often",
         "toxicity_logit": "less toxic", "toxicity_logit_continuation": "less toxic", "safety": "safer",
         "toxicity": "less toxic", "asr": "fewer successful attacks", "perplexity": "lower perplexity",
         "word_perplexity": "lower perplexity", "loss": "lower loss"}
VERDICT_CLASS = {"better": "better", "worse": "worse", "no detectable difference": "same",
                 "higher": "dir", "lower": "dir", "too few seeds": "few"}
VERDICT_COLOUR = {"better": "#2e8b3e", "worse": "#c62828", "same": "#777777", "dir": "#1f5fa8", "few": "#b0b0b0"}

STYLE = """
.forests{column-width:500px;column-gap:1.4em;margin:0.4em 0 1em}
.forest{border:1px solid #ddd;border-radius:4px;padding:0.3em 0.6em 0.4em;break-inside:avoid;margin:0 0 0.6em}
.forest h4{margin:0.1em 0 0.3em;font-size:14px}
.frow{display:grid;grid-template-columns:9em 1fr 7.5em;align-items:center;gap:0.5em;font-size:12px;margin:2px 0}
.flabel{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;line-height:1.15}
.ftrack{position:relative;height:30px;background:#fafafa;border-bottom:1px solid #e4e4e4}
.fzero{position:absolute;left:50%;top:0;bottom:0;border-left:1px dashed #555}
.fci{position:absolute;top:7px;height:3px}
.fpt{position:absolute;top:3px;width:10px;height:10px;margin-left:-5px;border-radius:50%}
.fends{position:absolute;left:2px;right:2px;bottom:0;font-size:9px;line-height:11px;color:#666;display:flex;
 justify-content:space-between;pointer-events:none}
.fends span{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:49%}
.fverdict{font-weight:600;line-height:1.1;font-size:11px}
.fverdict.better{color:#2e8b3e}.fverdict.worse{color:#c62828}.fverdict.same{color:#777}.fverdict.dir{color:#1f5fa8}.fverdict.few{color:#999}
"""


def verdict_class(verdict: str) -> str:
    return VERDICT_CLASS.get(verdict, "dir")


def direction_words(metric: str, higher_is_better: bool | None) -> str:
    """'less toxic', 'more accurate', 'lower asr': what moving right on a row means for A."""
    if higher_is_better is None:
        return f"higher {metric}"
    return PLAIN.get(metric, f"{'higher' if higher_is_better else 'lower'} {metric}")


def questions(comparisons: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The comparisons by question, in the order findings listed them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for c in comparisons:
        out.setdefault(str(c.get("question")), []).append(c)
    return out


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _f(x: Any) -> str:
    v = _num(x)
    if v is None:
        return "–"
    return f"{v:+.3g}" if abs(v) < 1000 else f"{v:+.1f}"


def hover(c: dict[str, Any]) -> str:
    """Every number of one comparison, for a row's tooltip and the PNG's caption."""
    parts = [f"{c['benchmark']} {c['metric']}: {c['a']} − {c['b']} = {_f(c.get('difference'))}"]
    if _num(c.get("ci_low")) is not None:
        parts[0] += f" [{_f(c.get('ci_low'))}, {_f(c.get('ci_high'))}] (95%)"
    parts.append(f"means {c['a']} {_f(c.get('mean_a')).lstrip('+')}, {c['b']} {_f(c.get('mean_b')).lstrip('+')}")
    for key in ("p", "p_adjusted"):
        if _num(c.get(key)) is not None:
            parts.append(f"{key} = {c[key]:.3g}" + (f" ({c['correction']})" if key == "p_adjusted"
                                                      and c.get("correction") else ""))
    if _num(c.get("df")) is not None:
        parts.append(f"df = {c['df']:.3g}")
    parts.append(f"{c.get('test')}, {c.get('contexts')} contexts × {c.get('seeds')} seeds")
    parts.append(f"verdict: {c.get('verdict')}")
    return "; ".join(parts)


def _scale(c: dict[str, Any]) -> tuple[float, float]:
    """(half-width of the row's axis, sign): zero in the middle; sign −1 turns a lower-is-better
    row around so that A's better side is always on the right."""
    vals = [abs(v) for v in (_num(c.get("ci_low")), _num(c.get("ci_high")), _num(c.get("difference")))
            if v is not None]
    half = max(vals, default=0.0) * 1.15 or 1.0
    return half, (-1.0 if c.get("higher_is_better") is False else 1.0)


def _pos(v: float, half: float, sign: float) -> float:
    return 50.0 + 45.0 * sign * v / half


def _row(c: dict[str, Any]) -> str:
    half, sign = _scale(c)
    cls = verdict_class(str(c.get("verdict")))
    colour = VERDICT_COLOUR[cls]
    d, lo, hi = _num(c.get("difference")), _num(c.get("ci_low")), _num(c.get("ci_high"))
    marks = ""
    if lo is not None and hi is not None:
        x0, x1 = sorted((_pos(lo, half, sign), _pos(hi, half, sign)))
        marks += f"<span class='fci' style='left:{x0:.1f}%;width:{max(x1 - x0, 0.4):.1f}%;background:{colour}'></span>"
    if d is not None:
        marks += f"<span class='fpt' style='left:{_pos(d, half, sign):.1f}%;background:{colour}'></span>"
    words = direction_words(str(c["metric"]), c.get("higher_is_better"))
    right = f"{c['a']}: {words} →"
    left = f"← {c['b']}: {words}" if c.get("higher_is_better") is not None else f"← lower {c['metric']}"
    ends = f"<span class='fends'><span>{html.escape(left)}</span><span>{html.escape(right)}</span></span>"
    label = f"{c['benchmark']} {c['metric']}"   # B is named at the row's left end
    return (f"<div class='frow' title='{html.escape(hover(c))}'><span class='flabel'>{html.escape(label)}<br>"
            f"<b>{html.escape(_f(d))}</b></span><span class='ftrack'><span class='fzero'></span>{marks}{ends}</span>"
            f"<span class='fverdict {cls}'>{html.escape(str(c.get('verdict')))}</span></div>")


def html_block(comparisons: list[dict[str, Any]]) -> str:
    """One forest plot per question, in a responsive grid."""
    blocks = []
    for q, rows in questions(comparisons).items():
        blocks.append(f"<div class='forest'><h4>{html.escape(q)}</h4>" + "".join(_row(c) for c in rows) + "</div>")
    return "<div class='forests'>" + "".join(blocks) + "</div>"


def slug(question: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", question).strip("_")[:80] or "question"


def figures(comparisons: list[dict[str, Any]]) -> list:
    """forest_<question> figures; each one's data (and so its cache key) is what it shows."""
    from alignkit.collect.figcache import Figure

    keep = ("a", "b", "benchmark", "metric", "higher_is_better", "difference", "ci_low", "ci_high", "verdict")
    out, seen = [], set()
    for q, rows in questions(comparisons).items():
        stem = "forest_" + slug(q)
        while stem in seen:
            stem += "_"
        seen.add(stem)
        out.append(Figure(stem, draw, {"question": q, "rows": [{k: c.get(k) for k in keep} for c in rows]}))
    return out


def draw(d: dict[str, Any]):
    """A matplotlib figure: one small axis per comparison (its own scale), zero line, interval and
    estimate in the verdict's colour, the better side labelled in words."""
    from alignkit.collect.plots import _plt

    plt = _plt()
    question, rows = d["question"], d["rows"]
    n = len(rows)
    fig, axes = plt.subplots(n, 1, figsize=(6.4, 0.62 * n + 0.9), squeeze=False, layout="constrained")
    for ax, c in zip(axes[:, 0], rows, strict=True):
        half, sign = _scale(c)
        colour = VERDICT_COLOUR[verdict_class(str(c.get("verdict")))]
        d, lo, hi = _num(c.get("difference")), _num(c.get("ci_low")), _num(c.get("ci_high"))
        ax.axvline(0, color="#444", lw=0.8, ls="--")
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [0, 0], color=colour, lw=3, solid_capstyle="butt")
        if d is not None:
            ax.plot([d], [0], "o", color=colour, ms=7)
        ax.set_xlim(-half, half)
        if sign < 0:
            ax.invert_xaxis()      # lower is better: A's better side on the right, as in the report
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=7, pad=1)
        for s in ("top", "right", "left"):
            ax.spines[s].set_visible(False)
        words = direction_words(str(c["metric"]), c.get("higher_is_better"))
        vs = f" vs {c['b']}" if len({r["b"] for r in rows}) > 1 else ""
        ax.set_title(f"{c['benchmark']} {c['metric']}{vs}: {_f(d)} — {c.get('verdict')}", fontsize=8, loc="left",
                     pad=2)
        ax.text(1.0, 1.02, f"{c['a']}: {words} →", transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                color="#555")
    fig.suptitle(f"{question}: A − B, 95% interval", fontsize=10)
    return fig
