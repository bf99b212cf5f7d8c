"""PNG plots of a study (matplotlib, Agg backend, imported only when plots are asked for).

  sft_vs_dpo_<benchmark>.png  final checkpoint, one panel per (dataset, PEFT): bars per base model
                              and preference, SFT beside DPO, error bars = std over seeds
  steps_<benchmark>.png       metric vs training step (the quantity study), one panel per base
                              model, a line per (dataset, PEFT, preference, method), band = ± std
  axis_<axis>_<benchmark>.png metric vs each dotted axis the study sweeps (e.g. method.beta), a line
                              per configuration of the other axes, error bars = std over seeds
  merges_<benchmark>.png      each merge beside the runs it combines, one panel per base model
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

from alignkit import paper_numbers as paper
from alignkit.collect.summary import (BENCH_ORDER, METHOD_ORDER, Cells, Stat, Stats, _order, extra_label,
                                      method_label, norm_method)
from alignkit.fsio import atomic_write_bytes

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _grid(n: int, plt, w: float = 5.0, h: float = 3.6):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _rows(stats: Stats, primary: dict[str, str]):
    for k, st in stats.items():
        r = stats.row(k)
        if primary.get(r["benchmark"]) == r["metric"] and st.mean is not None:
            yield r, st


def sft_vs_dpo(stats: Stats, primary: dict[str, str], out: Path) -> list[Path]:
    plt = _plt()
    data: dict[str, dict[tuple, dict[tuple, dict[str, Stat]]]] = {}
    for r, st in _rows(stats, primary):
        if r["checkpoint"] != "final" or r["merge"]:
            continue
        panel = (r["dataset"], r["peft"])
        group = (r["model"], r["preference"]) + ((extra_label(r, stats.extra),) if stats.extra else ())
        data.setdefault(r["benchmark"], {}).setdefault(panel, {}).setdefault(group, {})[r["method"]] = st
    paths = []
    for bench in _order(data, BENCH_ORDER):
        panels = data[bench]
        fig, axes = _grid(len(panels), plt, 5.5, 4.6)
        for ax, panel in zip(axes, _order(panels), strict=True):
            groups = _order(panels[panel])
            methods = _order({m for g in groups for m in panels[panel][g]}, METHOD_ORDER)
            width = 0.8 / max(len(methods), 1)
            for i, m in enumerate(methods):
                xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(groups))]
                sts = [panels[panel][g].get(m) for g in groups]
                ax.bar(xs, [s.mean if s else 0 for s in sts], width, yerr=[(s.std or 0) if s else 0 for s in sts],
                       capsize=3, color=_COLORS[i % len(_COLORS)], label=m.upper())
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels([" / ".join(str(x) for x in g if x) for g in groups], fontsize=8, rotation=35, ha="right")
            ax.set_title(f"{panel[0]} / {panel[1]}", fontsize=10)
            ax.set_ylabel(f"{bench} {primary[bench]}")
            ax.axhline(0, color="#888", lw=0.5)
            ax.legend(fontsize=8)
        fig.suptitle(f"SFT vs DPO: {bench} ({primary[bench]}) at the final checkpoint, mean ± std over seeds")
        paths.append(_save(fig, out / f"sft_vs_dpo_{_slug(bench)}.png"))
    return paths


def steps(stats: Stats, primary: dict[str, str], out: Path) -> list[Path]:
    plt = _plt()
    data: dict[str, dict[str, dict[tuple, list[tuple[int, Stat]]]]] = {}
    for r, st in _rows(stats, primary):
        if r["merge"] or r["step"] is None:
            continue
        line = (r["dataset"], r["peft"], r["preference"], r["method"], *(r[a] for a in stats.extra))
        data.setdefault(r["benchmark"], {}).setdefault(r["model"], {}).setdefault(line, []).append((r["step"], st))
    paths = []
    for bench in _order(data, BENCH_ORDER):
        models = data[bench]
        if max(len(pts) for lines in models.values() for pts in lines.values()) < 2:
            continue  # only final checkpoints: nothing to draw against steps
        fig, axes = _grid(len(models), plt, 5.5, 3.8)
        for ax, model in zip(axes, _order(models), strict=True):
            for i, line in enumerate(_order(models[model])):
                pts = sorted(models[model][line], key=lambda p: p[0])
                xs = [p[0] for p in pts]
                ys = [p[1].mean for p in pts]
                sd = [p[1].std or 0.0 for p in pts]
                c = _COLORS[i % len(_COLORS)]
                style = "-" if line[3] == "dpo" else "--"
                ax.plot(xs, ys, style, marker="o", ms=3, color=c, label="/".join(str(x) for x in line if x is not None))
                ax.fill_between(xs, [y - s for y, s in zip(ys, sd, strict=True)], [y + s for y, s in zip(ys, sd, strict=True)], color=c,
                                alpha=0.15, lw=0)
            ax.set_title(str(model), fontsize=10)
            ax.set_xlabel("training step")
            ax.set_ylabel(f"{bench} {primary[bench]}")
            ax.legend(fontsize=6)
        fig.suptitle(f"{bench} ({primary[bench]}) vs training step, mean ± std over seeds")
        paths.append(_save(fig, out / f"steps_{_slug(bench)}.png"))
    return paths


def merges(cells: Cells, out: Path) -> list[Path]:
    plt = _plt()
    have = [k for k, st in cells.stats.items() if k[3] == "merged" and st.mean is not None]
    groups = sorted({k[:3] for k in have}, key=str)
    if not groups:
        return []
    benches = _order({k[6] for k in have}, BENCH_ORDER)
    paths = []
    for bench in benches:
        fig, axes = _grid(len(groups), plt, 6.0, 3.8)
        for ax, g in zip(axes, groups, strict=True):
            items: list[tuple[str, Stat, bool]] = []
            for k, st in cells.stats.items():
                if k[:3] != g or k[6] != bench or st.mean is None:
                    continue
                if k[3] in ("harmless", "helpful") and k[5] is None:
                    items.append((f"{k[3]}-{method_label(k[4])}", st, False))
                elif k[3] == "merged":
                    base, _, name = str(k[5]).partition(":")
                    items.append((f"{paper.MERGE_NAMES.get(base, base)}-{method_label(norm_method(k[4]) or '')}" + (f"[{name}]" if name else ""),
                                  st, True))
            items.sort(key=lambda x: (x[2], x[0]))
            ax.bar(range(len(items)), [x[1].mean for x in items], yerr=[x[1].std or 0 for x in items], capsize=3,
                   color=["#d62728" if x[2] else "#1f77b4" for x in items])
            ax.set_xticks(range(len(items)))
            ax.set_xticklabels([x[0] for x in items], rotation=35, ha="right", fontsize=8)
            ax.set_title(f"{cells.model_names.get(g[0], g[0])} / {g[1]} / {g[2]}", fontsize=10)
            ax.set_ylabel(bench)
            ax.axhline(0, color="#888", lw=0.5)
        fig.suptitle(f"Merges (red) vs their inputs (blue): {bench}, final checkpoint, mean ± std over seeds")
        paths.append(_save(fig, out / f"merges_{_slug(bench)}.png"))
    return paths


def _axis_sort(values: list[Any]) -> list[Any]:
    nums = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return sorted(values, key=(lambda v: v) if nums else str)


def axes(stats: Stats, primary: dict[str, str], out: Path) -> list[Path]:
    """axis_<axis>_<benchmark>.png for each dotted axis with ≥2 values: the final checkpoint's metric
    against the axis value (a numeric axis on a log scale when its values span ≥10×), a line per
    configuration of the other axes, error bars = std over seeds."""
    plt = _plt()
    paths = []
    for axis in stats.extra:
        data: dict[str, dict[tuple, list[tuple[Any, Stat]]]] = {}
        for r, st in _rows(stats, primary):
            if r["checkpoint"] != "final" or r["merge"] or r[axis] is None:
                continue
            others = [a for a in stats.extra if a != axis]
            line = (r["model"], r["dataset"], r["preference"], r["method"], r["peft"],
                    *(f"{a}={r[a]}" for a in others if r[a] is not None))
            data.setdefault(r["benchmark"], {}).setdefault(line, []).append((r[axis], st))
        for bench in _order(data, BENCH_ORDER):
            values = _axis_sort(list({v for pts in data[bench].values() for v, _ in pts}))
            if len(values) < 2:
                continue
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            fig, (ax,) = _grid(1, plt, 7.0, 4.2)
            for i, line in enumerate(_order(data[bench])):
                pts = sorted(data[bench][line], key=lambda p: values.index(p[0]))
                xs = [p[0] if numeric else values.index(p[0]) for p in pts]
                ax.errorbar(xs, [p[1].mean for p in pts], yerr=[p[1].std or 0 for p in pts], marker="o", ms=4,
                            capsize=3, color=_COLORS[i % len(_COLORS)],
                            label="/".join(str(x) for x in line if x is not None))
            if numeric and min(values) > 0 and max(values) / min(values) >= 10:
                ax.set_xscale("log")
            if not numeric:
                ax.set_xticks(range(len(values)))
                ax.set_xticklabels([str(v) for v in values], rotation=35, ha="right", fontsize=8)
            ax.set_xlabel(axis)
            ax.set_ylabel(f"{bench} {primary[bench]}")
            ax.legend(fontsize=6)
            ax.set_title(f"{bench} ({primary[bench]}) vs {axis}, final checkpoint, mean ± std over seeds", fontsize=10)
            paths.append(_save(fig, out / f"axis_{_slug(axis)}_{_slug(bench)}.png"))
    return paths


def all_plots(stats: Stats, primary: dict[str, str], cells: Cells, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return sft_vs_dpo(stats, primary, out) + steps(stats, primary, out) + axes(stats, primary, out) + merges(cells, out)


def describe(path: Path) -> dict[str, Any]:
    return {"path": str(path), "bytes": path.stat().st_size}
