"""report.html as a person sees it: rendered by headless Chromium (Debian `chromium`), screenshots
checked to be non-blank and to show the findings first (their verdict colours at the top).

Chromium is required: without it these tests FAIL with how to install it (.ci/run installs it).
Set ALIGNKIT_SCREENSHOT_DIR to keep the screenshots for looking at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from alignkit.collect import collect
from tests.unit import planted_study

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BETTER_RGB = (0xD9, 0xF2, 0xD9)   # td.better in report.py
WORSE_RGB = (0xF8, 0xD7, 0xD7)


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
    assert "<nav class='toc'>" in page and "overflow-x:auto" in page
    # every table scrolls sideways inside its own box instead of being cut at the page width
    assert page.count("<table") == page.count("<div class='scroll'><table")
    assert page.index("id='findings'") < page.index("id='results'")


def test_smoke_shaped_report_renders(tmp_path):
    root = tmp_path / "smoke"
    planted_study.smoke_shaped(root, failed=("tiny-llama/beavertails/harmless/dpo/qlora/1",))
    collect(root, out=root / "collect", accounting=False)        # every format, plots included
    page = (root / "collect" / "report.html").read_text()
    _structure(page)
    for png in ("train_loss.png", "train_reward_accuracy.png", "train_reward_margin.png", "steps_mmlu.png"):
        assert f"alt='{png}'" in page, png
    assert "id='failures'" in page and "OutOfMemoryError" in page
    assert "paper" not in re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    img = pixels(screenshot(root / "collect" / "report.html", tmp_path / "smoke-report.png"))
    _check_not_blank(img)
    assert img.shape[:2] == (2600, 1400)


def test_full_size_report_renders_findings_first(tmp_path):
    root = tmp_path / "full"
    planted_study.full_size(root, failed=("llama-7b/hh-rlhf/helpful/sft/lora/3",))
    collect(root, out=root / "collect", formats=("csv", "md", "html"), accounting=False)
    page = (root / "collect" / "report.html").read_text()
    _structure(page)
    assert page.index("id='takeaways'") < page.index("id='comparisons'") < page.index("id='failures'")
    img = pixels(screenshot(root / "collect" / "report.html", tmp_path / "full-report.png"))
    _check_not_blank(img)
    # the takeaways (all planted as "supported", green) are on the first screen
    assert _has(img, BETTER_RGB, slice(0, 1400)) > 500
    # and the comparisons further down show "worse" (red) verdicts too (SFT vs DPO on pre-trained bases)
    assert _has(img, WORSE_RGB, slice(0, 2600)) > 200
