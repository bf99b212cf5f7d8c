"""Figures of a study (matplotlib, Agg backend, imported only when plots are asked for), drawn
through the figure cache (figcache.py: redrawn only when the data they show changed).

  sft_vs_dpo_<benchmark>   final checkpoint, one panel per (dataset, PEFT): a point per base model
                           and preference for each method, error bar = std over seeds
  steps_<benchmark>        metric vs training step (the quantity study), a line per (preference,
                           method, ...), band = ± std; panels split by model, then dataset, PEFT, ...
                           until no panel has more than MAX_SERIES lines
  axis_<axis>_<benchmark>  metric vs each dotted axis the study sweeps (e.g. method.beta)
  merges_<benchmark>       each merge beside the runs it combines, one panel per base model
  forest_<question>        the findings (forest.py)

No bars: the differences findings call better/worse are often 1-2% of the value, which a bar from
zero hides; the y axis spans the data. No panel is drawn without data, no label says "None".
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from alignkit.collect import paper_numbers as paper
from alignkit.collect.figcache import Figure
from alignkit.collect.summary import (BENCH_ORDER, METHOD_ORDER, Cells, Stat, Stats, _order, extra_label,
                                      method_label, norm_method)

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
MAX_SERIES = 8     # lines per panel; more are split into more panels
_COLORS = COLORS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "alignkit", "figure.max_open_warning": 0})
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)


def _grid(n: int, plt, w: float = 5.0, h: float = 3.6, cols: int = 3):
    cols = max(1, min(n, cols))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.remove()                      # no empty panels
    return fig, list(axes.flat[:n])


def _label(parts: Any) -> str:
    return " / ".join(str(x) for x in parts if x not in (None, ""))


def _st(st: Stat) -> list[Any]:
    return [st.mean, st.std or 0.0, st.n]


def _rows(stats: Stats, primary: dict[str, str]):
    for k, st in stats.items():
        r = stats.row(k)
        if primary.get(r["benchmark"]) == r["metric"] and st.mean is not None:
            yield r, st


def _titled(fig, titles: dict[str, str]):
    fig.alignkit_titles = titles
    return fig


def _legend(fig, axes, n_series: int) -> None:
    """One legend beside the panels (never over the data)."""
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside right upper", fontsize=8)


# ---------------------------------------------------------------- SFT vs DPO
def sft_vs_dpo_data(stats: Stats, primary: dict[str, str]) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[tuple, dict[tuple, dict[str, Stat]]]] = {}
    for r, st in _rows(stats, primary):
        if r["checkpoint"] != "final" or r["merge"] or r["dataset"] is None or r["peft"] is None \
                or r["method"] is None:
            continue   # the untrained base model has no dataset/PEFT: it is in the tables, not here
        panel = (r["dataset"], r["peft"])
        group = (r["model"], r["preference"]) + ((extra_label(r, stats.extra),) if stats.extra else ())
        data.setdefault(r["benchmark"], {}).setdefault(panel, {}).setdefault(group, {})[r["method"]] = st
    out = {}
    for bench in _order(data, BENCH_ORDER):
        panels = []
        for panel in _order(data[bench]):
            groups = _order(data[bench][panel])
            methods = _order({m for g in groups for m in data[bench][panel][g]}, METHOD_ORDER)
            panels.append({"title": _label(panel), "groups": [_label(g) for g in groups], "methods": methods,
                           "values": {m: [(_st(data[bench][panel][g][m]) if m in data[bench][panel][g] else None)
                                          for g in groups] for m in methods}})
        out[bench] = {"bench": bench, "metric": primary[bench], "panels": panels}
    return out


def draw_sft_vs_dpo(d: dict[str, Any]):
    plt = _plt()
    fig, axes = _grid(len(d["panels"]), plt, 5.5, 4.2)
    titles = {}
    for pi, (ax, p) in enumerate(zip(axes, d["panels"], strict=True)):
        n = len(p["methods"])
        for i, m in enumerate(p["methods"]):
            pts = [(j + (i - (n - 1) / 2) * 0.18, v) for j, v in enumerate(p["values"][m]) if v is not None]
            gid = f"p{pi}m{i}"
            ax.errorbar([x for x, _ in pts], [v[0] for _, v in pts], yerr=[v[1] for _, v in pts], fmt="o", ms=5,
                        capsize=3, color=COLORS[i % len(COLORS)], label=method_label(str(m)), gid=gid)
            titles[gid] = f"{m}: " + "; ".join(f"{g}: {v[0]:.4g} ± {v[1]:.2g} (n={v[2]})"
                                               for g, v in zip(p["groups"], p["values"][m], strict=True) if v)
        ax.set_xticks(range(len(p["groups"])))
        ax.set_xticklabels(p["groups"], fontsize=8, rotation=35, ha="right")
        ax.set_xlim(-0.6, len(p["groups"]) - 0.4)
        ax.set_title(p["title"], fontsize=10)
        ax.set_ylabel(f"{d['bench']} {d['metric']}")
        ax.grid(axis="y", color="#eee")
    _legend(fig, axes, 0)
    fig.suptitle(f"{d['bench']} ({d['metric']}) at the final checkpoint by method: mean ± std over seeds "
                 f"(the axis spans the data, not from zero)", fontsize=11)
    return _titled(fig, titles)


# ---------------------------------------------------------------- metric vs step
def facet(lines: dict[tuple, Any], names: list[str], fixed: int = 0, limit: int = MAX_SERIES) -> int:
    """How many leading keys of each line's tuple go to the panel (at least `fixed`) so that no
    panel has more than `limit` lines."""
    width = len(names)
    for k in range(fixed, width + 1):
        per: dict[tuple, int] = {}
        for line in lines:
            per[line[:k]] = per.get(line[:k], 0) + 1
        if max(per.values(), default=0) <= limit:
            return k
    return width


def steps_data(stats: Stats, primary: dict[str, str]) -> dict[str, dict[str, Any]]:
    names = ["model", "dataset", "peft", "preference", "method", *stats.extra]
    data: dict[str, dict[tuple, list[tuple[int, Stat]]]] = {}
    for r, st in _rows(stats, primary):
        if r["merge"] or r["step"] is None or r["method"] is None:
            continue
        line = tuple(r[a] for a in names)
        data.setdefault(r["benchmark"], {}).setdefault(line, []).append((r["step"], st))
    out = {}
    for bench in _order(data, BENCH_ORDER):
        lines = data[bench]
        if max(len(p) for p in lines.values()) < 2:
            continue  # only final checkpoints: nothing to draw against steps
        k = facet(lines, names, fixed=1)
        panels: dict[tuple, list[dict[str, Any]]] = {}
        for line in sorted(lines, key=str):
            pts = sorted(lines[line], key=lambda p: p[0])
            panels.setdefault(line[:k], []).append({"label": _label(line[k:]), "dpo": line[4] == "dpo",
                                                   "points": [[s, *_st(st)] for s, st in pts]})
        out[bench] = {"bench": bench, "metric": primary[bench], "by": names[:k],
                      "panels": [{"title": _label(p), "lines": ls} for p, ls in panels.items()]}
    return out


def draw_steps(d: dict[str, Any]):
    plt = _plt()
    fig, axes = _grid(len(d["panels"]), plt, 4.6, 3.2, cols=4)
    titles, colour = {}, {}
    for pi, (ax, p) in enumerate(zip(axes, d["panels"], strict=True)):
        for li, line in enumerate(p["lines"]):
            c = colour.setdefault(line["label"], COLORS[len(colour) % len(COLORS)])
            xs, ys, sd = [q[0] for q in line["points"]], [q[1] for q in line["points"]], [q[2] for q in line["points"]]
            gid = f"p{pi}l{li}"
            ax.plot(xs, ys, "-" if line["dpo"] else "--", color=c, label=line["label"], gid=gid)
            ax.fill_between(xs, [y - s for y, s in zip(ys, sd, strict=True)],
                            [y + s for y, s in zip(ys, sd, strict=True)], color=c, alpha=0.15, lw=0)
            titles[gid] = f"{p['title']} {line['label']}: " + ", ".join(f"step {x}: {y:.4g} ± {s:.2g}"
                                                                        for x, y, s in zip(xs, ys, sd, strict=True))
        ax.set_title(p["title"], fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.set_ylabel(f"{d['bench']} {d['metric']}", fontsize=8)
        ax.tick_params(labelsize=7)
    _legend(fig, axes, 0)
    fig.suptitle(f"{d['bench']} ({d['metric']}) vs training step, mean ± std over seeds; "
                 f"a panel per {', '.join(d['by'])}", fontsize=11)
    return _titled(fig, titles)


# ---------------------------------------------------------------- merges
def merges_data(cells: Cells) -> dict[str, dict[str, Any]]:
    have = [k for k, st in cells.stats.items() if k[3] == "merged" and st.mean is not None]
    groups = sorted({k[:3] for k in have}, key=str)
    out = {}
    for bench in _order({k[6] for k in have}, BENCH_ORDER):
        panels = []
        for g in groups:
            items: list[tuple[str, list[Any], bool]] = []
            for k, st in cells.stats.items():
                if k[:3] != g or k[6] != bench or st.mean is None:
                    continue
                if k[3] in ("harmless", "helpful") and k[5] is None:
                    items.append((f"{k[3]}-{method_label(k[4])}", _st(st), False))
                elif k[3] == "merged":
                    base, _, name = str(k[5]).partition(":")
                    items.append((f"{paper.MERGE_NAMES.get(base, base)}-{method_label(norm_method(k[4]) or '')}"
                                  + (f"[{name}]" if name else ""), _st(st), True))
            if any(i[2] for i in items):
                items.sort(key=lambda x: (x[2], x[0]))
                panels.append({"title": _label((cells.model_names.get(g[0], g[0]), g[1], g[2])), "items": items})
        if panels:
            out[bench] = {"bench": bench, "panels": panels}
    return out


def draw_merges(d: dict[str, Any]):
    plt = _plt()
    fig, axes = _grid(len(d["panels"]), plt, 6.0, 3.8)
    titles = {}
    for pi, (ax, p) in enumerate(zip(axes, d["panels"], strict=True)):
        for j, (label, v, merged) in enumerate(p["items"]):
            gid = f"p{pi}i{j}"
            ax.errorbar([j], [v[0]], yerr=[v[1]], fmt="s" if merged else "o", ms=6, capsize=3,
                        color="#d62728" if merged else "#1f77b4", gid=gid)
            titles[gid] = f"{label}: {v[0]:.4g} ± {v[1]:.2g} (n={v[2]})"
        ax.set_xticks(range(len(p["items"])))
        ax.set_xticklabels([i[0] for i in p["items"]], rotation=35, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(p["items"]) - 0.4)
        ax.set_title(p["title"], fontsize=10)
        ax.set_ylabel(d["bench"])
        ax.grid(axis="y", color="#eee")
    fig.suptitle(f"Merges (red squares) vs their inputs (blue): {d['bench']}, final checkpoint, mean ± std over "
                 "seeds", fontsize=11)
    return _titled(fig, titles)


# ---------------------------------------------------------------- dotted axes
def _axis_sort(values: list[Any]) -> list[Any]:
    nums = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return sorted(values, key=(lambda v: v) if nums else str)


def axes_data(stats: Stats, primary: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for axis in stats.extra:
        if axis == "target":   # one point per target, no seeds: the findings compare targets, with intervals
            continue
        others = [a for a in stats.extra if a != axis]
        names = ["model", "dataset", "peft", "preference", "method", *others]
        data: dict[str, dict[tuple, list[tuple[Any, Stat]]]] = {}
        for r, st in _rows(stats, primary):
            if r["checkpoint"] != "final" or r["merge"] or r[axis] is None:
                continue
            line = tuple(r[a] if a in ("model", "dataset", "peft", "preference", "method")
                         else (f"{a}={r[a]}" if r[a] is not None else None) for a in names)
            data.setdefault(r["benchmark"], {}).setdefault(line, []).append((r[axis], st))
        for bench in _order(data, BENCH_ORDER):
            values = _axis_sort(list({v for pts in data[bench].values() for v, _ in pts}))
            if len(values) < 2:
                continue
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            k = facet(data[bench], names)
            panels: dict[tuple, list[dict[str, Any]]] = {}
            for line in sorted(data[bench], key=str):
                pts = sorted(data[bench][line], key=lambda p: values.index(p[0]))
                panels.setdefault(line[:k], []).append({"label": _label(line[k:]) or bench,
                                                       "points": [[v, *_st(st)] for v, st in pts]})
            out[(axis, bench)] = {"axis": axis, "bench": bench, "metric": primary[bench], "numeric": numeric,
                                  "values": values, "log": bool(numeric and min(values) > 0
                                                               and max(values) / min(values) >= 10),
                                  "panels": [{"title": _label(p) or "all runs", "lines": ls}
                                             for p, ls in panels.items()]}
    return out


def draw_axis(d: dict[str, Any]):
    plt = _plt()
    fig, axes = _grid(len(d["panels"]), plt, 5.5, 3.8)
    titles, colour = {}, {}
    for pi, (ax, p) in enumerate(zip(axes, d["panels"], strict=True)):
        for li, line in enumerate(p["lines"]):
            c = colour.setdefault(line["label"], COLORS[len(colour) % len(COLORS)])
            xs = [q[0] if d["numeric"] else d["values"].index(q[0]) for q in line["points"]]
            gid = f"p{pi}l{li}"
            ax.errorbar(xs, [q[1] for q in line["points"]], yerr=[q[2] for q in line["points"]], marker="o", ms=4,
                        capsize=3, color=c, label=line["label"], gid=gid)
            titles[gid] = f"{line['label']}: " + ", ".join(f"{d['axis']}={q[0]}: {q[1]:.4g} ± {q[2]:.2g}"
                                                          for q in line["points"])
        if d["log"]:
            ax.set_xscale("log")
        if not d["numeric"]:
            ax.set_xticks(range(len(d["values"])))
            ax.set_xticklabels([str(v) for v in d["values"]], rotation=35, ha="right", fontsize=8)
        ax.set_xlabel(d["axis"])
        ax.set_ylabel(f"{d['bench']} {d['metric']}")
        ax.set_title(p["title"], fontsize=9)
    _legend(fig, axes, 0)
    fig.suptitle(f"{d['bench']} ({d['metric']}) vs {d['axis']}, final checkpoint, mean ± std over seeds",
                 fontsize=11)
    return _titled(fig, titles)


def figures(stats: Stats, primary: dict[str, str], cells: Cells) -> list[Figure]:
    figs = [Figure(f"sft_vs_dpo_{_slug(b)}", draw_sft_vs_dpo, d) for b, d in sft_vs_dpo_data(stats, primary).items()]
    figs += [Figure(f"steps_{_slug(b)}", draw_steps, d) for b, d in steps_data(stats, primary).items()]
    figs += [Figure(f"axis_{_slug(a)}_{_slug(b)}", draw_axis, d) for (a, b), d in axes_data(stats, primary).items()]
    figs += [Figure(f"merges_{_slug(b)}", draw_merges, d) for b, d in merges_data(cells).items()]
    return figs


def all_plots(stats: Stats, primary: dict[str, str], cells: Cells, out: Path) -> list[Path]:
    from alignkit.collect import figcache

    return figcache.render(figures(stats, primary, cells), out)[0]


def describe(path: Path) -> dict[str, Any]:
    return {"path": str(path), "bytes": path.stat().st_size}
