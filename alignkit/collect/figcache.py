"""Figures drawn only when what they show changed.

A figure is `Figure(stem, drawer, data)`: `drawer` is a module-level function `data -> matplotlib
figure` and `data` is exactly what the figure shows (plain JSON-able values). Its key is the
sha256 of that data and of the drawing modules' source, kept in `<plots>/.cache/<stem>.key`; a
figure whose key and files are there is not drawn again, so a second `collect` of an unchanged
study draws nothing. Missing figures are drawn in worker processes when there are several and
more than one CPU (matplotlib draws in one thread), else in this process.

Each figure is written as PNG and PDF (for papers) and SVG (inlined in report.html, with a hover
title per series: the drawer puts {gid: text} in `fig.alignkit_titles`).
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from alignkit.contract.fsio import atomic_write_bytes, atomic_write_text

FORMATS = ("png", "pdf", "svg")
_DRAWING_MODULES = ("plots.py", "curves.py", "forest.py", "figcache.py")


@dataclass
class Figure:
    stem: str
    drawer: Callable[[Any], Any]
    data: Any

    def path(self, out: Path, fmt: str) -> Path:
        return out / f"{self.stem}.{fmt}"


_code_hash: str | None = None


def code_hash() -> str:
    """The drawing code's version: a change of style redraws every figure."""
    global _code_hash
    if _code_hash is None:
        here = Path(__file__).parent
        h = hashlib.sha256()
        for name in _DRAWING_MODULES:
            h.update((here / name).read_bytes())
        _code_hash = h.hexdigest()
    return _code_hash


def key(fig: Figure) -> str:
    # repr, not json.dumps(sort_keys=True): 3× faster on 300 runs' curves, and as exact (the data is
    # built in a fixed order from sorted keys, floats repr'd round-trip)
    payload = repr((fig.drawer.__module__, fig.drawer.__qualname__, fig.data))
    return hashlib.sha256((code_hash() + payload).encode()).hexdigest()


def _key_path(out: Path, stem: str) -> Path:
    return out / ".cache" / f"{stem}.key"


def fresh(fig: Figure, out: Path, k: str) -> bool:
    kp = _key_path(out, fig.stem)
    try:
        return kp.read_text() == k and all(fig.path(out, f).exists() for f in FORMATS)
    except OSError:
        return False


_ATTR = re.compile(r'( (?:d|points|x|y|x1|x2|y1|y2|transform|width|height|viewBox)=")([^"]*)(")')
_FLOAT = re.compile(r"(-?\d+\.\d)\d+")


def compact_svg(svg: str) -> str:
    """Coordinates to 0.1 px (invisible on screen, about half the bytes); text is left alone."""
    svg = _ATTR.sub(lambda m: m.group(1) + " ".join(_FLOAT.sub(r"\1", m.group(2)).split()) + m.group(3), svg)
    return re.sub(r">\s+<", "><", svg)


def _svg_titles(svg: str, titles: dict[str, str]) -> str:
    """A <title> inside each series' group: the browser shows it on hover (no script)."""
    for gid, text in titles.items():
        svg = re.sub(f'(<g id="{re.escape(gid)}"[^>]*>)', lambda m, t=text: m.group(1) + f"<title>{html.escape(t)}</title>",
                     svg, count=1)
    return svg


def draw_one(fig: Figure, out: Path, k: str) -> str:
    import io

    from alignkit.collect.plots import _plt

    plt = _plt()
    f = fig.drawer(fig.data)
    titles = getattr(f, "alignkit_titles", {})
    for fmt in FORMATS:
        buf = io.BytesIO()
        meta = {"Date": None} if fmt in ("pdf", "svg") else {}
        f.savefig(buf, format=fmt, dpi=100, metadata=meta)
        data = buf.getvalue()
        if fmt == "svg":
            data = _svg_titles(compact_svg(data.decode("utf-8")), titles).encode("utf-8")
        atomic_write_bytes(fig.path(out, fmt), data)
    plt.close(f)
    (out / ".cache").mkdir(parents=True, exist_ok=True)
    atomic_write_text(_key_path(out, fig.stem), k)
    return fig.stem


def _worker(args: tuple[Figure, str, str]) -> str:
    fig, out, k = args
    return draw_one(fig, Path(out), k)


def render(figs: list[Figure], out: Path, workers: int | None = None) -> tuple[list[Path], int]:
    """Draw what changed; return every figure's PNG path (in order) and how many were drawn."""
    out.mkdir(parents=True, exist_ok=True)
    todo = []
    for fig in figs:
        k = key(fig)
        if not fresh(fig, out, k):
            todo.append((fig, str(out), k))
    # at most 8: a login node's CPUs are shared with everyone on it
    n_workers = min(len(todo), workers if workers is not None else min(8, os.cpu_count() or 1))
    if n_workers > 1 and len(todo) >= 4:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(n_workers) as pool:
            pool.map(_worker, todo, chunksize=1)
    else:
        for t in todo:
            _worker(t)
    return [fig.path(out, "png") for fig in figs], len(todo)


def inline_svg(png: Path) -> str:
    """The figure's SVG for inlining in report.html (the XML prologue and DOCTYPE dropped)."""
    svg = png.with_suffix(".svg").read_text(encoding="utf-8")
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
