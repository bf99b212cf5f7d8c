"""report.html as a person sees it: rendered by headless Chromium (Debian `chromium`), screenshots
checked to be non-blank and to show the findings first (their verdict colours on the first 900 px);
every shipped study's tiny report (its real plan, made-up results: tests/fixtures/planned_results.py)
without a "None" or an empty plot panel; a full-size report under 2 MB, collected again in under 2 s.

Chromium is required: without it these tests FAIL with how to install it (.ci/run installs it).
Set ALIGNKIT_SCREENSHOT_DIR to keep the screenshots for looking at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from alignkit.collect import collect
from tests.fixtures import planned_results
from tests.fixtures import planted_study

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_TINY = [ROOT / "sweeps" / "smoke.yaml", *sorted((ROOT / "sweeps" / "tiny").glob("*.yaml"))]

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BETTER_RGB = (0xD9, 0xF2, 0xD9)   # td.better in report.py
WORSE_RGB = (0xF8, 0xD7, 0xD7)
FOREST_WORSE_RGB = (0xC6, 0x28, 0x28)   # forest.VERDICT_COLOUR["worse"]


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed to check report.html as a person sees it, and none of "
                f"{', '.join(BROWSERS)} is on PATH: install it with `apt-get install -y chromium` "
                "(.ci/run does this under CI=true)")


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 2600) -> Path:
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={out.parent / (out.stem + '-profile')}", f"--window-size={width},{height}",
           f"--screenshot={out}", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and out.exists(), f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    keep = os.environ.get("ALIGNKIT_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / out.name)
    return out


def pixels(png: Path):
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(str(png))[..., :3]
    return (np.round(img * 255)).astype(int) if img.dtype != np.uint8 else img.astype(int)


def _check_not_blank(img) -> None:
    import numpy as np

    h, w, _ = img.shape
    ink = (img.min(axis=2) < 200).mean()       # dark-ish pixels: text, borders, plot lines
    colours = len(np.unique(img.reshape(-1, 3)[:: max(1, h * w // 200000)], axis=0))
    assert ink > 0.01, f"screenshot is (nearly) blank: {ink:.2%} of pixels are not white"
    assert colours > 30, f"screenshot has only {colours} colours: nothing rendered?"


def _has(img, rgb, rows: slice) -> int:
    import numpy as np

    return int(np.all(img[rows] == np.array(rgb), axis=2).sum())


def _structure(page: str) -> None:
    assert "<details class='toc'>" in page and "overflow-x:auto" in page
    # every table scrolls sideways inside its own box instead of being cut at the page width
    assert page.count("<table") == page.count("<div class='scroll'><table")
    assert page.index("id='findings'") < page.index("id='results'")


def test_smoke_shaped_report_renders(tmp_path):
    root = tmp_path / "smoke"
    planted_study.smoke_shaped(root, failed=("tiny-llama/beavertails/harmless/dpo/qlora/1",))
    collect(root, out=root / "collect", accounting=False)        # every format, plots included
    page = (root / "collect" / "report.html").read_text()
    _structure(page)
    for fig in ("train_loss", "train_reward_accuracy", "train_reward_margin", "steps_mmlu", "forest_method_dpo_vs_sft"):
        assert f"id='{fig}'" in page or fig.startswith("forest_"), fig
        assert (root / "collect" / "plots" / f"{fig}.png").exists() and (root / "collect" / "plots" / f"{fig}.pdf").exists()
    assert "id='failures'" in page and "OutOfMemoryError" in page
    # figures are inline SVG whose series carry their values as hover titles (no script)
    figs = re.findall(r"<figure class='plot' id='([^']+)'><svg.*?</figure>", page, flags=re.S)
    assert len(figs) >= 10
    for fig in re.findall(r"<figure class='plot' id='[^']+'><svg.*?</figure>", page, flags=re.S):
        assert re.search(r"<title>[^<]*\d\.\d+ ± [^<]*</title>|<title>[^<]*step \d+: \d", fig), fig[:200]
    assert "paper" not in re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    img = pixels(screenshot(root / "collect" / "report.html", tmp_path / "smoke-report.png"))
    _check_not_blank(img)
    assert img.shape[:2] == (2600, 1400)
    # the tables filter offline: the inlined List.js runs from file:// (a probe filters one table)
    probe = root / "collect" / "probe.html"
    probe.write_text(page.replace("</body>", "<script>var e=document.getElementById('t-comparisons');"
                                  "var l=new List(e.id,{valueNames:JSON.parse(e.dataset.cols)});l.search('mmlu');"
                                  "document.title='filtered '+l.visibleItems.length+' of '+l.items.length;</script></body>"))
    dom = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'probe-profile'}", "--dump-dom", probe.resolve().as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    shown, total = map(int, re.search(r"<title>filtered (\d+) of (\d+)</title>", dom).groups())
    assert 0 < shown < total


def test_full_size_report_opens_on_the_takeaways(tmp_path):
    root = tmp_path / "full"
    planted_study.full_size(root, failed=("llama-7b/hh-rlhf/helpful/sft/lora/3",))
    collect(root, out=root / "collect", formats=("csv", "md", "html"), accounting=False)
    page = (root / "collect" / "report.html").read_text()
    _structure(page)
    assert page.index("<h1>") < page.index("class='status failed'") < page.index("id='takeaways'") \
        < page.index("id='forest'") < page.index("id='comparisons'") < page.index("id='failures'")
    # 320 runs + 20 mixture runs (2 models × 2 methods × 5 seeds), an eval each, 100 merges + their evals = 880;
    # one train job failed and its eval never started
    assert "Partial: 878 of 880 jobs done (1 failed, 1 not started)" in page
    first = pixels(screenshot(root / "collect" / "report.html", tmp_path / "full-first-screen.png", height=900))
    _check_not_blank(first)
    # the takeaways (all planted as "supported": green cells) are within the first 900 px
    assert _has(first, BETTER_RGB, slice(0, 900)) > 500
    # further down, the forest plots show "worse" (SFT vs DPO on pre-trained bases) in red; since merges
    # are compared with each input on its own (a panel row per input) that panel sits below 2,600 px
    img = pixels(screenshot(root / "collect" / "report.html", tmp_path / "full-report.png", height=6000))
    assert _has(img, FOREST_WORSE_RGB, slice(0, 6000)) > 50


def _visible_text(page: str) -> str:
    import html

    return html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)>.*?</\1>", "", page, flags=re.S)))


def _panels_with_data(svg: str) -> tuple[int, set[int]]:
    """(axes drawn, axes indices that hold a data series): the drawers give every series the id
    p<panel index>..., so a panel without one is empty."""
    n = len(re.findall(r'<g id="axes_\d+"', svg))
    return n, {int(m) for m in re.findall(r'<g id="p(\d+)[a-z]', svg)}


@pytest.mark.parametrize("spec", SHIPPED_TINY, ids=lambda p: p.stem)
def test_shipped_tiny_reports_have_no_none_and_no_empty_panels(tmp_path, capfd, spec):
    root = tmp_path / spec.stem
    planned_results.write(spec, root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        digest = collect(root, out=root / "collect", accounting=False)
    err = capfd.readouterr().err
    assert not [w for w in caught if "matplotlib" in (w.filename or "") or "matplotlib" in str(w.message)], \
        [str(w.message) for w in caught]
    assert "Warning" not in err, err
    page = (root / "collect" / "report.html").read_text()
    text = _visible_text(page)
    assert not re.search(r"\bNone\b", text), re.search(r".{80}\bNone\b.{40}", text, flags=re.S)
    assert "Test model — these numbers carry no meaning" in text   # every shipped tiny spec trains assets/tiny-llama
    import yaml

    desc = yaml.safe_load(spec.read_text()).get("description")
    assert desc and " ".join(desc.split()) in text                   # the spec's own words, at the top
    assert text.index(" ".join(desc.split())) < text.index("Findings")
    plots = root / "collect" / "plots"
    for svg in sorted(plots.glob("*.svg")):
        body = svg.read_text()
        assert not re.search(r">[^<]*\bNone\b[^<]*<", body), svg.name
        if svg.name.startswith("forest_"):
            continue
        n, with_data = _panels_with_data(body)
        assert n >= 1 and with_data == set(range(n)), f"{svg.name}: panels {sorted(set(range(n)) - with_data)} empty"
    assert digest["figures_drawn"] == len(list(plots.glob("*.png")))
    img = pixels(screenshot(root / "collect" / "report.html", tmp_path / f"{spec.stem}-report.png", height=900))
    _check_not_blank(img)


@pytest.mark.slow
def test_full_size_report_small_and_second_collect_fast(tmp_path):
    root = tmp_path / "full"
    planted_study.full_size(root)
    first = collect(root, out=root / "collect", accounting=False)        # every format, figures included
    report = root / "collect" / "report.html"
    assert report.stat().st_size <= 2_000_000, report.stat().st_size
    assert first["figures_drawn"] > 20
    t = time.perf_counter()
    again = collect(root, out=root / "collect", accounting=False)
    took = time.perf_counter() - t
    assert again["figures_drawn"] == 0 and took <= 2.0, took
    # a changed result redraws only the figures that show it
    job = next(j for j in json.loads((root / "manifest.json").read_text())["jobs"] if j["stage"] == "train")
    tm = root / "jobs" / job["id"] / "train_metrics.json"
    data = json.loads(tm.read_text())
    data["loss_curve"][-1]["loss"] += 0.5
    tm.write_text(json.dumps(data))
    third = collect(root, out=root / "collect", accounting=False)
    assert third["figures_drawn"] == 1, third["figures_drawn"]       # train_loss only
