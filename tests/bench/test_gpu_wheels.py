"""bench/gpu_wheels.py's rules for what the GPU machine needs carried (docs/gpu.md), on the machine's
package list as the device tool's KINDS.md gives it (bench/gpu_machine.txt) and our pins."""

from __future__ import annotations

import lzma
import zipfile
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from bench import gpu_wheels as gw

ROOT = Path(__file__).resolve().parents[2]
MACHINE = gw.read_machine(ROOT / "bench" / "gpu_machine.txt")
PINS = gw.read_pins(ROOT / "requirements" / "constraints.txt")


def test_the_machine_list_holds_what_kinds_md_read_there():
    # KINDS.md's pip list row: transformers 5.17.0, torch 2.11.0, huggingface_hub 1.33.0; trl absent.
    assert MACHINE["transformers"] == "5.17.0" and MACHINE["torch"] == "2.11.0"
    assert MACHINE["huggingface-hub"] == "1.33.0" and MACHINE["accelerate"] == "1.15.0"
    assert "trl" not in MACHINE and "bitsandbytes" not in MACHINE and MACHINE["peft"] is None


def test_a_project_dependency_is_carried_at_its_pin_unless_the_machine_has_exactly_it():
    version, why = gw.decide(gw.Need("transformers", root=True), PINS, MACHINE)
    assert version == PINS["transformers"] and "5.17.0" in why
    assert gw.decide(gw.Need("accelerate", root=True), PINS, MACHINE) is None  # 1.15.0 both
    assert gw.decide(gw.Need("peft", root=True), PINS, MACHINE)[0] == PINS["peft"]  # version unknown there
    assert gw.decide(gw.Need("trl", root=True), PINS, MACHINE) == (PINS["trl"], "not on the GPU machine")


def test_a_dependency_uses_the_machines_copy_unless_a_requirement_or_an_upper_bound_says_otherwise():
    hub = gw.Need("huggingface-hub", [("transformers 5.24.0", SpecifierSet(">=1.31.0,<3.0"))])
    assert gw.decide(hub, PINS, MACHINE) is None  # 1.33.0 meets it
    hub.specs.append(("someone", SpecifierSet(">=2.0")))
    assert gw.decide(hub, PINS, MACHINE)[0] == PINS["huggingface-hub"]
    lower_only = gw.Need("regex", [("transformers 5.24.0", SpecifierSet(">=2025.10.22"))])
    assert gw.decide(lower_only, PINS, MACHINE) is None  # version unknown, no upper bound: trusted
    bounded = gw.Need("fsspec", [("datasets 5.2.0", SpecifierSet("<=2026.9.0,>=2023.1.0"))])
    version, why = gw.decide(bounded, PINS, MACHINE)
    assert "unknown" in why and SpecifierSet("<=2026.9.0,>=2023.1.0").contains(version)


def test_torch_is_never_carried_and_the_pinned_requirements_accept_the_machines():
    assert gw.NEVER.match("torch") and gw.NEVER.match("nvidia-cublas") and gw.NEVER.match("triton")
    # bitsandbytes 0.50.2's own requirement, from its wheel's METADATA (in this venv)
    bnb = [r for r in gw.requires(gw.im.distribution("bitsandbytes").read_text("METADATA")) if r.name == "torch"]
    assert bnb and all(r.specifier.contains(MACHINE["torch"]) for r in bnb)


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_a_packed_wheel_unpacks_to_the_same_files(tmp_path):
    files = {"pkg/__init__.py": b"x = 1\n" * 1000, "pkg-1.0.dist-info/METADATA": b"Name: pkg\nVersion: 1.0\n"}
    whl = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl", files)
    packed = gw.pack(whl, tmp_path)
    assert packed.name == whl.name + ".xz"
    out = tmp_path / "unpacked.whl"
    out.write_bytes(lzma.decompress(packed.read_bytes()))  # what bench/gpu_check.sh does
    with zipfile.ZipFile(out) as z:
        assert {i.filename: z.read(i) for i in z.infolist()} == files
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}


def test_split_fills_sets_under_the_capacity_and_refuses_a_wheel_that_fits_nowhere(tmp_path):
    def carried(name: str, size: int) -> gw.Carried:
        f = tmp_path / f"{name}.whl"
        f.write_bytes(b"\0" * size)
        return gw.Carried(name, "1", "test", file=f)

    sets = gw.split([carried("a", 60), carried("b", 30), carried("c", 30), carried("d", 10)], capacity=70)
    assert [sorted(c.name for c in s) for s in sets] == [["a", "d"], ["b", "c"]]
    with pytest.raises(gw.Refused, match="alone exceeds"):
        gw.split([carried("e", 71)], capacity=70)
