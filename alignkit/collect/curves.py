"""Training curves from each train job's `train_metrics.json` `loss_curve` (docs/training.md):
loss, and for DPO-family runs reward accuracy and margin, per run and averaged over seeds; and,
when the dataset holds out a validation split, its `"validation"` `"curve"` (validation loss and
reward accuracy at every `training.eval_steps`).

  train_<quantity>.png   one panel per (model, dataset, method); a thin line per run, a thick
                         line per (preference, PEFT) = the mean over its seeds at each logged step
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.collect.study import Study
from alignkit.collect.summary import MISSING, Stat, Table, _order, fmt
from alignkit.contract import paths

QUANTITIES = (("loss", "training loss"), ("reward_accuracy", "DPO reward accuracy"),
              ("reward_margin", "DPO reward margin"), ("validation_loss", "validation loss (held-out split)"),
              ("validation_reward_accuracy", "DPO reward accuracy on the held-out split"))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def series(study: Study) -> list[dict[str, Any]]:
    """One entry per train job with a loss curve: its axes and {quantity: [(step, value)]}; the
    dotted axes the study sweeps split its lines."""
    from alignkit.collect.tidy import axis_value, extra_axes

    extra = extra_axes(study)
    out = []
    for job in study.of_stage("train"):
        curve = (job.results.get(paths.TRAIN_METRICS) or {}).get("loss_curve")
        if not isinstance(curve, list):
            continue
        pts: dict[str, list[tuple[int, float]]] = {}
        val = (job.results.get(paths.TRAIN_METRICS) or {}).get("validation")
        val_curve = val.get("curve") if isinstance(val, dict) and isinstance(val.get("curve"), list) else []
        for q, _ in QUANTITIES:
            src, key = (val_curve, q[len("validation_"):]) if q.startswith("validation_") else (curve, q)
            for p in src:
                if isinstance(p, dict) and isinstance(p.get("step"), int) and _finite(p.get(key)):
                    pts.setdefault(q, []).append((p["step"], float(p[key])))
        if pts:
            a = job.axes
            out.append({"job": job.id, "name": job.name, "panel": (a.get("model"), a.get("dataset"), a.get("method")),
                        "line": (_pref(a.get("preference")), a.get("peft"),
                                 *(f"{x}={axis_value(a.get(x))}" for x in extra if a.get(x) is not None)),
                        "seed": a.get("seed"), "points": pts})
    return out


def _pref(p: Any) -> str:
    return "+".join(sorted(map(str, p))) if isinstance(p, (list, tuple)) else str(p)


def seed_mean(runs: list[dict[str, Any]], q: str) -> list[tuple[int, float]]:
    """Mean over runs at each step that every run logged (seeds of one cell log the same steps)."""
    by_step: dict[int, list[float]] = {}
    for r in runs:
        for s, v in r["points"].get(q, []):
            by_step.setdefault(s, []).append(v)
    n = len([r for r in runs if r["points"].get(q)])
    return [(s, sum(v) / len(v)) for s, v in sorted(by_step.items()) if len(v) == n]


def figures(study: Study) -> list:
    """train_<quantity> figures: a panel per (model, dataset, method), split further (by the line's
    leading keys) until no panel has more than plots.MAX_SERIES mean lines."""
    from alignkit.collect.figcache import Figure
    from alignkit.collect.plots import facet

    runs = series(study)
    figs = []
    for q, label in QUANTITIES:
        have = [r for r in runs if r["points"].get(q)]
        if not have:
            continue
        cells: dict[tuple, list[dict[str, Any]]] = {}
        for r in have:
            cells.setdefault(tuple(r["panel"]) + tuple(r["line"]), []).append(r)
        width = max(len(k) for k in cells)
        cells = {k + (None,) * (width - len(k)): v for k, v in cells.items()}
        k = facet(cells, [""] * width, fixed=3)
        panels: dict[tuple, list[dict[str, Any]]] = {}
        for key in _order(cells):
            cell = cells[key]
            panels.setdefault(key[:k], []).append({
                "label": "/".join(str(x) for x in key[k:] if x is not None) + f" (n={len(cell)})",
                "runs": [r["points"][q] for r in cell], "mean": seed_mean(cell, q)})
        figs.append(Figure(f"train_{q}", draw, {"label": label, "panels": [
            {"title": " / ".join(str(x) for x in p if x is not None), "lines": ls} for p, ls in panels.items()]}))
    return figs


def draw(d: dict[str, Any]):
    from alignkit.collect.plots import COLORS, _grid, _legend, _plt, _titled

    plt = _plt()
    fig, axes = _grid(len(d["panels"]), plt, 4.6, 3.2, cols=4)
    titles, colour = {}, {}
    for pi, (ax, p) in enumerate(zip(axes, d["panels"], strict=True)):
        for li, line in enumerate(p["lines"]):
            c = colour.setdefault(line["label"].rsplit(" (n=", 1)[0], COLORS[len(colour) % len(COLORS)])
            for pts in line["runs"]:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, color=c, lw=0.6, alpha=0.35)
            if line["mean"]:
                xs, ys = zip(*line["mean"], strict=True)
                gid = f"p{pi}l{li}"
                ax.plot(xs, ys, color=c, lw=2.0, label=line["label"].rsplit(" (n=", 1)[0], gid=gid)
                step = max(1, len(xs) // 8)
                titles[gid] = f"{p['title']} {line['label']} mean: " + ", ".join(
                    f"step {x}: {y:.4g}" for x, y in list(zip(xs, ys, strict=True))[::step])
        ax.set_title(p["title"], fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(d["label"], fontsize=8)
        ax.tick_params(labelsize=7)
    _legend(fig, axes, 0)
    fig.suptitle(f"{d['label']}: thin = one run, thick = mean over seeds", fontsize=11)
    return _titled(fig, titles)


def plots(study: Study, out: Path) -> list[Path]:
    from alignkit.collect import figcache

    return figcache.render(figures(study), out)[0]


def table(rows: list[dict[str, Any]], extra: tuple[str, ...] | list[str] = ()) -> Table | None:
    """Last-window training numbers per cell, mean ± std over seeds (from the tidy table's train rows),
    with the held-out split's last validation numbers when the runs logged them."""
    base = ("final_loss", "first_loss", "dpo_reward_accuracy", "dpo_reward_margin", "tokens_per_s")
    val = sorted({r["metric"] for r in rows if r["stage"] == "train" and str(r["metric"]).startswith("validation_")},
                 key=lambda m: (m != "validation_loss", m))
    metrics = (*base, *val)
    axes = ("model", "dataset", "preference", "method", "peft", *extra)
    cells: dict[tuple, dict[str, Stat]] = {}
    for r in rows:
        if r["stage"] == "train" and r["metric"] in metrics and r["value"] is not None:
            key = tuple(str(r.get(k) if r.get(k) is not None else "") for k in axes)
            cells.setdefault(key, {}).setdefault(r["metric"], Stat()).values.append(r["value"])
    if not cells:
        return None
    used = [m for m in metrics if any(m in c for c in cells.values())]
    body = [list(k) + [cells[k][m].text() if m in cells[k] else MISSING for m in used] for k in sorted(cells)]
    return Table("Training: last logged window (mean ± std over seeds)",
                 [*axes, *used], body,
                 "From train_metrics.json; dpo_* only for DPO-family runs; validation_* = the last evaluation "
                 "on the held-out split.", "training")


__all__ = ["figures", "plots", "series", "seed_mean", "table", "fmt"]
