"""The wheels bench/gpu_check.sh needs on the GPU machine, for Python 3.12 manylinux x86-64.

    python bench/gpu_wheels.py [--dest bench/gpu-wheels] [--limit-mib 64] [--dry-run]

(bench/gpu_wheels.sh runs it with the project's venv.) What to carry is decided from three
inputs: the project's dependencies (pyproject: the base list and the train, eval, merge and gpu
extras), their pins (requirements/constraints.txt) and what the GPU machine already has
(bench/gpu_machine.txt). The rules, in order:

  1. torch, triton and the CUDA packages (nvidia-*, cuda-*) are never carried: the machine's torch
     is a CUDA build, ours a CPU one. Every requirement on them is checked against the machine's
     versions instead (torch 2.11.0, triton 3.6.0) and a rejection stops the script.
  2. A direct dependency of the project is carried at its pin unless the machine has exactly that
     version: these are the libraries whose versions change results (transformers 5.17 there,
     5.24 pinned).
  3. Any other dependency is carried when the machine lacks it, when the machine's known version
     fails a carried package's requirement, or when its version is unknown and a carried package
     bounds it from above (an upper bound is what a recent image is likely to break). Otherwise the
     machine's copy is used; bench/gpu_check.sh re-checks every requirement where it runs.
  4. Versions: the pin, else the version in the project's venv (what the CPU tests ran with);
     every requirement seen must accept it. Where PyPI has only an sdist (deepspeed), a wheel is
     built with its compiled ops off (DS_BUILD_OPS=0), and must come out pure Python.

The device tool carries at most 64 MiB per call, working tree included (tracked files plus
untracked files git does not ignore). When the wheels and the tree do not fit together, the wheels
are split into sets (first-fit, largest first), each carried by its own call:
<dest>/set1, <dest>/set2; <dest>/manifest.json lists every wheel, its set and why it is carried.
"""

from __future__ import annotations

import argparse
import email
import importlib.metadata as im
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
EXTRAS = ("train", "eval", "merge", "gpu")
NEVER = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
# The GPU machine: CPython 3.12.3 on Linux x86-64 (bench/gpu_machine.txt's first line).
TARGET_ENV = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
              "implementation_name": "cpython", "platform_python_implementation": "CPython",
              "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
              "os_name": "posix", "extra": ""}
PLATFORMS = ["manylinux2014_x86_64"] + [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)]
UPPER = ("<", "<=", "==", "~=", "===")


class Refused(Exception):
    """A requirement this wheel set cannot meet: printed as one line, exit code 2."""


@dataclass
class Need:
    name: str
    specs: list[tuple[str, SpecifierSet]] = field(default_factory=list)  # (required by, specifier)
    root: bool = False


@dataclass
class Carried:
    name: str
    version: str
    reason: str
    file: Path | None = None
    built_from_sdist: bool = False
    set: int = 0


def read_machine(path: Path) -> dict[str, str | None]:
    have: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, ver = line.partition("==")
            have[canonicalize_name(name)] = ver or None
    return have


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pin = next((s.version for s in req.specifier if s.operator == "=="), None)
            if pin:
                pins[canonicalize_name(req.name)] = pin
    return pins


def project_roots(pyproject: Path) -> list[str]:
    proj = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(proj.get("dependencies", []))
    for extra in EXTRAS:
        reqs += proj.get("optional-dependencies", {}).get(extra, [])
    return sorted({canonicalize_name(Requirement(r).name) for r in reqs})


def requires(meta_text: str) -> list[Requirement]:
    """Requirements of a METADATA file that apply on the GPU machine (no extras asked for)."""
    msg = email.message_from_string(meta_text)
    out = []
    for line in msg.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(TARGET_ENV):
            out.append(req)
    return out


def venv_version(name: str) -> str | None:
    try:
        return im.version(name)
    except im.PackageNotFoundError:
        return None


def metadata_from_wheel(whl: Path) -> str:
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return z.read(meta).decode()


def wheel_name_version(whl: Path) -> tuple[str, str]:
    name, version = whl.name.split("-")[:2]
    return canonicalize_name(name), version


def pip(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          env=env or os.environ.copy())


def download(names: list[tuple[str, str]], dl: Path) -> dict[str, Path]:
    """name==version wheels for the GPU machine into dl; an sdist-only package is built instead."""
    have = {wheel_name_version(p): p for p in dl.glob("*.whl")}
    todo = [(n, v) for n, v in names if (n, v) not in have]
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    while todo:
        res = pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                  "--implementation", "cp", *plat, "--platform", "any", "-d", str(dl),
                  *[f"{n}=={v}" for n, v in todo])
        if res.returncode == 0:
            break
        missing = re.findall(r"No matching distribution found for ([A-Za-z0-9_.\-]+)==", res.stderr)
        if not missing:
            raise Refused("pip download failed: " + res.stderr.strip().splitlines()[-1])
        for m in missing:
            n = canonicalize_name(m)
            v = dict(todo)[n]
            build_pure_wheel(n, v, dl)
            todo = [(a, b) for a, b in todo if a != n]
    found = {wheel_name_version(p): p for p in dl.glob("*.whl")}
    out = {}
    for n, v in names:
        if (n, v) not in found:
            raise Refused(f"{n}=={v}: no wheel after download")
        out[n] = found[(n, v)]
    return out


def build_pure_wheel(name: str, version: str, dl: Path) -> None:
    # DS_BUILD_OPS=0: DeepSpeed compiles its ops at run time when asked for (none are here).
    env = dict(os.environ, DS_BUILD_OPS="0")
    res = pip("wheel", "--no-deps", "--no-cache-dir", "--no-binary", name, "-w", str(dl), f"{name}=={version}",
              env=env)
    if res.returncode != 0:
        raise Refused(f"{name}=={version}: PyPI has no wheel and building one failed: "
                      + res.stderr.strip().splitlines()[-1])
    built = [p for p in dl.glob("*.whl") if wheel_name_version(p) == (name, version)]
    if not built or not built[0].name.endswith("-py3-none-any.whl"):
        raise Refused(f"{name}=={version}: the wheel built from its sdist is not pure Python ({built})")
    (dl / f"{built[0].name}.built-from-sdist").write_text("DS_BUILD_OPS=0\n")


def resolve(roots: list[str], pins: dict[str, str], machine: dict[str, str | None], dl: Path) -> tuple[dict[str, Carried], list[dict], list[dict]]:
    """Walk the requirement graph from the roots; return carried packages, the machine's packages
    used as they are, and every requirement on torch/triton with whether the machine's accepts it."""
    needs: dict[str, Need] = {r: Need(r, root=True) for r in roots}
    carried: dict[str, Carried] = {}
    pinned_to_machine: list[dict] = []
    queue = list(roots)
    seen: set[str] = set()
    meta_cache: dict[str, str] = {}

    def metadata(name: str, version: str) -> str:
        if venv_version(name) == version:
            return im.distribution(name).read_text("METADATA") or ""
        if name not in meta_cache:
            meta_cache[name] = metadata_from_wheel(download([(name, version)], dl)[name])
        return meta_cache[name]

    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        need = needs[name]
        if NEVER.match(name):
            continue
        decision = decide(need, pins, machine)
        if decision is None:
            seen.add(name)
            continue
        version, reason = decision
        for who, spec in need.specs:
            if not spec.contains(version, prereleases=True):
                raise Refused(f"{name}=={version} (pin or venv) does not satisfy {who}'s requirement {name}{spec}")
        seen.add(name)
        carried[name] = Carried(name, version, reason)
        for req in requires(metadata(name, version)):
            dep = canonicalize_name(req.name)
            needs.setdefault(dep, Need(dep)).specs.append((f"{name} {version}", req.specifier))
            if dep in seen and dep not in carried and not NEVER.match(dep):
                seen.discard(dep)  # a new requirement may change the decision for a package left alone
            queue.append(dep)
    for c in carried.values():  # requirements found after a package was decided
        for who, spec in needs[c.name].specs:
            if not spec.contains(c.version, prereleases=True):
                raise Refused(f"{c.name}=={c.version} does not satisfy {who}'s requirement {c.name}{spec}")
    machine_checks = []
    for name, need in sorted(needs.items()):
        if name in carried:
            continue
        have = machine.get(name)
        row = {"name": name, "machine_version": have,
               "required": sorted({f"{who}: {spec or 'any'}" for who, spec in need.specs})}
        if have is not None:
            bad = [f"{who}: {spec}" for who, spec in need.specs if not spec.contains(have, prereleases=True)]
            if bad and NEVER.match(name):
                raise Refused(f"the GPU machine's {name} {have} is rejected by " + "; ".join(bad))
            row["accepted"] = not bad
        (machine_checks if NEVER.match(name) else pinned_to_machine).append(row)
    return carried, pinned_to_machine, machine_checks


def decide(need: Need, pins: dict[str, str], machine: dict[str, str | None]) -> tuple[str, str] | None:
    name = need.name
    have = machine.get(name, "absent") if name in machine else "absent"
    want = pins.get(name) or venv_version(name)
    if need.root:
        if have == want:
            return None
        if want is None:
            raise Refused(f"{name}: a project dependency with no pin in requirements/constraints.txt")
        why = "not on the GPU machine" if have == "absent" else (
            f"project dependency: the GPU machine's version is unknown, pinned {want}" if have is None
            else f"project dependency: GPU machine has {have}, pinned {want}")
        return want, why
    if have == "absent":
        if want is None:
            raise Refused(f"{name}: needed by {need.specs[0][0]} but neither pinned nor in this venv")
        return want, "not on the GPU machine"
    if have is not None:
        bad = [f"{who} needs {spec}" for who, spec in need.specs if not spec.contains(have, prereleases=True)]
        if not bad:
            return None
        if want is None:
            raise Refused(f"{name}: GPU machine's {have} fails ({'; '.join(bad)}) and no version is known here")
        return want, f"GPU machine has {have}; " + "; ".join(bad)
    upper = [f"{who} needs {spec}" for who, spec in need.specs
             if any(s.operator in UPPER for s in spec)]
    if not upper:
        return None
    if want is None:
        raise Refused(f"{name}: bounded from above ({'; '.join(upper)}) and no version is known here")
    return want, "GPU machine's version unknown; " + "; ".join(upper)


def tree_bytes(root: Path) -> int:
    """What the device tool sends: tracked files plus untracked files git does not ignore."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout.decode()
    total = 0
    for rel in {p for p in out.split("\0") if p}:
        try:
            total += os.lstat(root / rel).st_size  # a symbolic link travels as a link
        except FileNotFoundError:
            pass  # deleted in the work tree, not yet committed
    return total


def pack(whl: Path, out_dir: Path) -> Path:
    """The same wheel with its zip entries stored, not deflated (same files, same RECORD), then
    xz-compressed: LZMA's large window finds what deflate cannot (bitsandbytes ships one CUDA
    library per CUDA version). bench/gpu_check.sh decompresses it back to a .whl before pip.
    Cached by file name: only new wheels pay for the compression."""
    out = out_dir / f"{whl.name}.xz"
    if out.exists():
        return out
    tmp = out_dir / f".{whl.name}.tmp"
    with zipfile.ZipFile(whl) as zi, lzma.open(tmp, "wb", preset=6) as raw:
        with zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zo:
            for info in zi.infolist():
                data = zi.read(info.filename)  # before the entry's info is changed to "stored"
                zo.writestr(info, data, compress_type=zipfile.ZIP_STORED)
    os.replace(tmp, out)
    return out


def split(carried: list[Carried], capacity: int) -> list[list[Carried]]:
    sets: list[list[Carried]] = []
    for c in sorted(carried, key=lambda c: -c.file.stat().st_size):
        size = c.file.stat().st_size
        if size > capacity:
            raise Refused(f"{c.file.name} ({size / MIB:.1f} MiB) alone exceeds the {capacity / MIB:.1f} MiB a call "
                          f"can carry beside the working tree")
        for s in sets:
            if sum(x.file.stat().st_size for x in s) + size <= capacity:
                s.append(c)
                break
        else:
            sets.append([c])
    return sets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=str(ROOT / "bench" / "gpu-wheels"))
    ap.add_argument("--limit-mib", type=float, default=64.0, help="what one device call carries, tree included")
    ap.add_argument("--headroom-mib", type=float, default=1.0, help="left free in each set for the tree to grow")
    ap.add_argument("--dry-run", action="store_true", help="decide and print (downloads only the wheels whose requirements are not in this venv)")
    a = ap.parse_args()
    dest = Path(a.dest)
    dl = dest / ".download"
    dl.mkdir(parents=True, exist_ok=True)
    machine = read_machine(ROOT / "bench" / "gpu_machine.txt")
    pins = read_pins(ROOT / "requirements" / "constraints.txt")
    roots = project_roots(ROOT / "pyproject.toml")
    carried, machine_used, never = resolve(roots, pins, machine, dl)
    print(f"GPU machine: {sum(1 for v in machine.values())} packages listed (bench/gpu_machine.txt)")
    for row in never:
        print(f"  not carried, the machine's own: {row['name']} {row['machine_version']}: "
              f"{'accepted by' if row.get('accepted') else 'REJECTED by'} {', '.join(row['required'])}")
    if a.dry_run:
        for c in carried.values():
            print(f"  carry {c.name}=={c.version}: {c.reason}")
        return 0
    files = download([(c.name, c.version) for c in carried.values()], dl)
    for c in carried.values():
        c.file = files[c.name]
        c.built_from_sdist = (dl / f"{c.file.name}.built-from-sdist").exists()
    tree = tree_bytes(ROOT)
    limit = int(a.limit_mib * MIB)
    capacity = limit - tree - int(a.headroom_mib * MIB)
    raw = sum(c.file.stat().st_size for c in carried.values())
    packed = raw > capacity
    if packed:
        print(f"{raw / MIB:.2f} MiB of wheels + {tree / MIB:.2f} MiB tree pass {a.limit_mib:.0f} MiB: xz-packing "
              f"them (cached in {dl}; the first time takes minutes)", flush=True)
        for c in carried.values():
            c.file = pack(c.file, dl)
    sets = split(list(carried.values()), capacity)
    for d in dest.glob("set*"):
        shutil.rmtree(d)
    print(f"\n{'wheel':60s} {'MiB':>7s}  set  why")
    for i, s in enumerate(sets, 1):
        (dest / f"set{i}").mkdir()
        for c in sorted(s, key=lambda c: c.name):
            c.set = i
            shutil.copy2(c.file, dest / f"set{i}" / c.file.name)
            print(f"{c.file.name:60s} {c.file.stat().st_size / MIB:7.2f}  {i:3d}  {c.reason}"
                  + ("; built from the sdist" if c.built_from_sdist else ""))
    total = sum(c.file.stat().st_size for c in carried.values())
    print(f"\nwheels: {len(carried)}, {raw / MIB:.2f} MiB as downloaded"
          + (f", {total / MIB:.2f} MiB xz-packed" if packed else "")
          + f"; working tree {tree / MIB:.2f} MiB; limit per call {limit / MIB:.0f} MiB")
    for i, s in enumerate(sets, 1):
        size = sum(c.file.stat().st_size for c in s)
        print(f"set{i}: {len(s)} wheels, {size / MIB:.2f} MiB + tree {tree / MIB:.2f} MiB = "
              f"{(size + tree) / MIB:.2f} MiB (carry: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}/set{i})")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    manifest = json.dumps({
        "git_commit": head.stdout.strip() or None,  # the GPU machine gets the tree without .git
        "python": "3.12", "platforms": PLATFORMS, "limit_bytes": limit, "tree_bytes": tree,
        "downloaded_bytes": raw, "carried_bytes": total, "xz_packed": packed, "sets": len(sets),
        "wheels": [{"name": c.name, "version": c.version, "file": c.file.name, "set": c.set,
                    "bytes": c.file.stat().st_size, "reason": c.reason, "built_from_sdist": c.built_from_sdist}
                   for c in sorted(carried.values(), key=lambda c: c.name)],
        "machine_packages_used": machine_used, "machine_only": never,
    }, indent=1)
    for i in range(1, len(sets) + 1):  # each set carries the whole list: the check sees what is missing
        (dest / f"set{i}" / "manifest.json").write_text(manifest)
    print(f"manifest: {dest / 'set1' / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except Refused as exc:
        print(f"gpu_wheels: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
