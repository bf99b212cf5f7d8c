"""The Python side of bench/gpu_check.sh: one step per call, each writing <work>/step-<name>.json.

    python bench/gpu_check.py STEP --work DIR [--tiny]      STEP: env | pitfalls | correctness |
                                                              deepspeed | eval | summary

Every check inside a step is a row {name, status: pass|fail|skip, detail, ...figures}; a check that
raises becomes a `fail` row with its one-line error, so one broken check does not hide the others.
`summary` gathers the step files (and the throughput results) into one JSON for $OUT.
"""

from __future__ import annotations

import argparse
import importlib.metadata as im
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "deepspeed",
            "lm-eval", "mergekit", "liger-kernel", "tokenizers", "huggingface-hub", "safetensors", "numpy",
            "triton", "submitit", "pyyaml")


class Checks:
    """Rows of one step; `run` turns an exception into a failed row."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        # main() names the step's file: rows are written as they finish, so a step stopped at its
        # time limit still reports the checks it completed (the first H100 run lost three steps' rows)
        self.sink = os.environ.get("AK_GPU_STEP_SINK")

    def run(self, name: str, fn: Callable[[], dict | None]) -> dict:
        t0 = time.time()
        try:
            row = fn() or {}
            row.setdefault("status", "pass")
        except Skip as exc:
            row = {"status": "skip", "detail": str(exc)}
        except Exception as exc:  # a failed check is a result, not a crash of the step
            lines = [s for s in str(exc).strip().splitlines() if s.strip()]
            row = {"status": "fail", "detail": f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:500]}
            traceback.print_exc()
        row = {"name": name, **row, "seconds": round(time.time() - t0, 2)}
        self.rows.append(row)
        print(f"[{row['status']:4s}] {name}: {row.get('detail', '')}", flush=True)
        if self.sink:
            tmp = Path(self.sink + ".tmp")
            tmp.write_text(json.dumps({"checks": self.rows, "partial": True}, indent=1, default=str))
            tmp.replace(self.sink)
        return row


class Skip(Exception):
    """The check cannot run here (no CUDA, a package not carried): a `skip` row with this reason."""


def expect(ok: bool, detail: str) -> dict:
    return {"status": "pass" if ok else "fail", "detail": detail}


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = im.version(name)
        except im.PackageNotFoundError:
            out[name] = None
    return out


def where_from(name: str) -> str | None:
    try:
        return str(im.distribution(name).locate_file(""))
    except im.PackageNotFoundError:
        return None


# ---- step: env ------------------------------------------------------------------------------------

def step_env(work: Path, tiny: bool) -> dict:
    checks = Checks()
    info: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable,
                            "platform": platform.platform(), "tiny": tiny}
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)
    info["git_commit"] = git.stdout.strip() or None
    info["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    manifests = sorted((ROOT / "bench" / "gpu-wheels").glob("set*/manifest.json"))
    # The device tool copies the work tree without .git: the commit bench/gpu_wheels.sh ran at.
    info["wheels_built_at_commit"] = json.loads(manifests[0].read_text()).get("git_commit") if manifests else None
    info["packages"] = versions()
    info["package_paths"] = {n: where_from(n) for n in ("transformers", "bitsandbytes", "trl", "peft", "torch")}
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                          "--format=csv,noheader"], capture_output=True, text=True) if _which("nvidia-smi") else None
    info["nvidia_smi"] = smi.stdout.strip() if smi and smi.returncode == 0 else None

    def torch_cuda() -> dict:
        import torch

        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = torch.cuda.is_available()
        if not torch.cuda.is_available():
            if tiny:
                raise Skip("no CUDA here (--tiny rehearsal on CPU)")
            return expect(False, "torch sees no CUDA device")
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_bytes": props.total_memory,
                       "capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count}
        return expect(True, f"{props.name}, {props.total_memory / 2**30:.1f} GiB, CUDA {torch.version.cuda}")

    checks.run("torch_sees_the_gpu", torch_cuda)
    checks.run("carried_wheels_installed", lambda: carried_installed(tiny))
    checks.run("requirements_met", lambda: requirements_met(tiny))
    return {"info": info, "checks": checks.rows}


def _which(cmd: str) -> bool:
    import shutil

    return shutil.which(cmd) is not None


def carried_installed(tiny: bool) -> dict:
    """Every wheel the manifest lists is importable at its version (both sets, when split)."""
    manifests = sorted((ROOT / "bench" / "gpu-wheels").glob("set*/manifest.json"))
    site = os.environ.get("AK_GPU_SITE")
    if not manifests:
        raise Skip("no bench/gpu-wheels/set*/manifest.json carried (run bench/gpu_wheels.sh first)")
    wheels = json.loads(manifests[0].read_text())["wheels"]
    wrong = []
    for w in wheels:
        try:
            have = im.version(w["name"])
        except im.PackageNotFoundError:
            have = None
        if have != w["version"]:
            wrong.append(f"{w['name']} {have or 'missing'} (set {w['set']} has {w['version']})")
    if tiny:  # the venv is used on CPU; the rehearsal installed the cp312 wheels elsewhere
        return {"status": "pass" if not wrong else "skip",
                "detail": f"{len(wheels)} wheels in the manifest; the venv differs in: {', '.join(wrong) or 'none'}"}
    return expect(not wrong, f"{len(wheels) - len(wrong)}/{len(wheels)} at the manifest's version in {site}"
                  + (f"; wrong: {', '.join(wrong)}" if wrong else ""))


def requirements_met(tiny: bool) -> dict:
    """pip check, for what the check imports: each requirement of each package it uses is met."""
    from packaging.requirements import Requirement

    bad, seen = [], 0
    roots = ["trl", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "deepspeed", "lm-eval",
             "mergekit", "liger-kernel"]
    todo, done = list(roots), set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        try:
            dist = im.distribution(name)
        except im.PackageNotFoundError:
            if name in roots and not (tiny and name == "liger-kernel"):  # GPU-only, not in the CPU venv
                bad.append(f"{name} missing")
            continue
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            seen += 1
            try:
                have = im.version(req.name)
            except im.PackageNotFoundError:
                bad.append(f"{name} needs {req} (missing)")
                continue
            if not req.specifier.contains(have, prereleases=True):
                bad.append(f"{name} needs {req} (have {have})")
            todo.append(req.name)
    return expect(not bad, f"{seen} requirements of {len(done)} packages" + (f"; unmet: {'; '.join(bad)}" if bad else " all met"))


# ---- step: summary --------------------------------------------------------------------------------

def step_summary(work: Path, tiny: bool, out: Path, wall_s: float | None) -> dict:
    status = json.loads((work / "status.json").read_text()) if (work / "status.json").exists() else {}
    steps: dict[str, Any] = {}
    for name in ("install", "env", "pitfalls", "correctness", "deepspeed", "eval", "evalrate", "throughput"):
        f = work / f"step-{name}.json"
        st = status.get(name, {})
        if not st and not f.exists():
            continue  # not among --steps (the shell records install always; the suite's rehearsal skips it)
        if f.exists():
            steps[name] = json.loads(f.read_text())
            if steps[name].pop("partial", False):  # stopped before its end: the checks it did not reach
                why = "timed out" if st.get("timed_out") else f"exit {st.get('exit')}"
                steps[name]["checks"].append({"name": f"{name}_unfinished", "status": "fail",
                                              "detail": f"step stopped ({why}) after {len(steps[name]['checks'])} "
                                                        f"checks: see the log"})
        elif name == "install":  # a shell step: its exit status is its result
            ok = st.get("exit") == 0
            steps[name] = {"checks": [{"name": "install_carried_wheels", "status": "pass" if ok else "fail",
                                       "detail": f"exit {st.get('exit')} after {st.get('seconds')} s"}]}
        else:
            why = "timed out" if st.get("timed_out") else f"exit {st.get('exit')}" if st else "did not run"
            steps[name] = {"checks": [{"name": name, "status": "fail",
                                       "detail": f"step wrote no result ({why}: see the log)"}]}
        if st:
            steps[name]["process"] = st
    counts: dict[str, int] = {}
    for s in steps.values():
        for row in s.get("checks", []):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
    result = {"tiny": tiny, "device": steps.get("env", {}).get("info", {}).get("nvidia_smi") or "cpu",
              "wall_s": wall_s, "counts": counts, "passed": counts.get("fail", 0) == 0, "steps": steps}
    out.write_text(json.dumps(result, indent=1, default=str))
    return result


STEPS = {"env": step_env}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["env", "pitfalls", "correctness", "deepspeed", "eval", "summary"])
    ap.add_argument("--work", required=True)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", help="summary: the JSON to write")
    ap.add_argument("--wall-s", type=float, help="summary: the whole check's wall time")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if a.step == "summary":
        r = step_summary(work, a.tiny, Path(a.out), a.wall_s)
        print(f"checks: {r['counts']}; passed: {r['passed']}")
        return 0 if r["passed"] else 1
    if a.step == "pitfalls":
        from bench.gpu_pitfalls import step_pitfalls as fn
    elif a.step in ("correctness", "deepspeed", "eval"):
        from bench import gpu_jobs

        fn = {"correctness": gpu_jobs.step_correctness, "deepspeed": gpu_jobs.step_deepspeed,
              "eval": gpu_jobs.step_eval}[a.step]
    else:
        fn = STEPS[a.step]
    os.environ["AK_GPU_STEP_SINK"] = str(work / f"step-{a.step}.json")
    result = fn(work, a.tiny)
    (work / f"step-{a.step}.json").write_text(json.dumps(result, indent=1, default=str))
    failed = [r["name"] for r in result.get("checks", []) if r["status"] == "fail"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
