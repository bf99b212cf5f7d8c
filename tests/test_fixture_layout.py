"""Test fixtures and asset builders live beside the assets (assets/build/) and the tests
(tests/fixtures/), never in the product packages (issue 13, item 8)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("alignkit", "jobs")
FIXTURE_PACKAGES = ("assets", "tests")
MOVED = {"jobs/tiny_model.py": "assets/build/tiny_model.py", "jobs/smoke_data.py": "assets/build/smoke_data.py",
         "jobs/eval/tiny_classifier.py": "assets/build/tiny_classifier.py",
         "alignkit/collect/synthetic.py": "tests/fixtures/synthetic_study.py"}


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def test_product_packages_import_no_fixture():
    bad = [f"{p.relative_to(ROOT)}: imports {m}" for pkg in PRODUCT for p in sorted((ROOT / pkg).rglob("*.py"))
           for m in _imports(p) if m.split(".")[0] in FIXTURE_PACKAGES]
    assert bad == []


def test_builders_moved_out_of_the_product_packages():
    for old, new in MOVED.items():
        assert not (ROOT / old).exists() and (ROOT / new).is_file(), old
    # no module of the product packages is runnable as an asset builder (`--out DIR` + __main__)
    builders = [str(p.relative_to(ROOT)) for pkg in PRODUCT for p in (ROOT / pkg).rglob("*.py")
                if "--out" in (text := p.read_text(encoding="utf-8")) and "__main__" in text]
    assert builders == []


def test_the_grep_would_catch_a_fixture_import(tmp_path):
    """The check above is not vacuous: both import forms of a fixture are seen."""
    f = tmp_path / "m.py"
    f.write_text("import assets.build.tiny_model\nfrom tests.fixtures.synthetic_study import write_study\n")
    assert _imports(f) == ["assets.build.tiny_model", "tests.fixtures.synthetic_study"]


def test_makefile_rebuilds_every_asset_with_the_moved_builders():
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    for mod in ("assets.build.smoke_data", "assets.build.tiny_model", "assets.build.tiny_classifier"):
        assert f"-m {mod} --out" in text, mod
    assert "demo: install assets" in text
