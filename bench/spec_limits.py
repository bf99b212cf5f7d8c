"""Spec limits (docs/spec.md, "Limits and refusals"): the largest grid `alignkit plan` handles
within 2 s, and how fast hostile specs are refused (a 10^9-job grid, a 4 kB alias bomb, deep
nesting, a 1 MiB file of '[').

Run: .venv/bin/python bench/spec_limits.py [--budget 2.0]. Each figure is the median wall time
of `python -m alignkit plan SPEC` in a fresh process (interpreter start-up included, measured
alone as the baseline), on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.fixtures.spec_fixtures import base  # noqa: E402  (the spec the unit tests mutate)

BOMB = 'lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"l{i}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(9))


def wall(cmd: list[str], repeat: int, expect: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        assert proc.returncode == expect, proc.stderr[-500:]
    return statistics.median(times)


def plan(path: Path, repeat: int, expect: int = 0) -> float:
    return wall([sys.executable, "-m", "alignkit", "plan", str(path)], repeat, expect)


def grid_spec(seeds: int) -> dict:
    """The unit-test spec (evals with a judge, two merges' worth of jobs) with `seeds` seeds:
    32 training runs per seed, 144 jobs per seed in all."""
    d = base()
    d["grid"]["seed"] = list(range(seeds))
    return d


def jobs_of(path: Path) -> int:
    out = subprocess.run([sys.executable, "-m", "alignkit", "plan", str(path)], cwd=ROOT, capture_output=True,
                         text=True, env={"KEY": "x", "PATH": "/usr/bin:/bin"}).stdout
    return int(out.split(":")[1].split()[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=2.0, help="seconds `plan` may take")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--refusals-only", action="store_true", help="skip the search for the largest grid")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spec-limits-"))
    start = wall([sys.executable, "-c", "pass"], args.repeat, 0)
    print(f"python -c pass: {start:.2f} s")

    def t_of(seeds: int) -> tuple[float, int]:
        path = tmp / f"grid-{seeds}.yaml"
        path.write_text(yaml.safe_dump(grid_spec(seeds)))
        return plan(path, args.repeat), jobs_of(path)

    if not args.refusals_only:  # double the seeds until over the budget, then bisect
        lo, hi = 1, 2
        while t_of(hi)[0] <= args.budget:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if t_of(mid)[0] <= args.budget else (lo, mid)
        t, jobs = t_of(lo)
        print(f"largest grid planned within {args.budget:g} s: {lo} seeds x 32 = {lo * 32} training runs, "
              f"{jobs} jobs, {t:.2f} s")

    cases = {
        "10^9-job grid, 1000 x 1000 x 1000": yaml.safe_dump(_big_grid()),
        "10^9-job grid, 64^5": yaml.safe_dump(_compact_grid()),
        "alias bomb": yaml.safe_dump(base()) + BOMB,
        "5,000-deep flow nesting": yaml.safe_dump(base()) + "deep: " + "[" * 5000 + "]" * 5000 + "\n",
        "1 MiB of '['": "[" * (1 << 20),
    }
    for name, text in cases.items():
        path = tmp / "hostile.yaml"
        path.write_text(text)
        print(f"refuse {name} ({len(text.encode()):,} bytes): {plan(path, args.repeat, expect=2):.2f} s")
    print(f"refuse /dev/zero: {plan(Path('/dev/zero'), args.repeat, expect=2):.2f} s")


def _compact_grid() -> dict:
    """64 models x 64 datasets x 64 methods x 64 peft x 64 seeds = 1.07e9 runs in ~40 kB."""
    d = base()
    d["models"] = {f"m{i}": {"source": "org/m"} for i in range(64)}
    d["datasets"] = {f"d{i}": {"format": "normalized", "source": "org/d"} for i in range(64)}
    d["methods"] = {f"x{i}": dict(d["methods"]["sft"], learning_rate=1e-4 * (i + 1)) for i in range(64)}
    d["peft"] = {f"p{i}": {} for i in range(64)}
    d["grid"] = {"model": list(d["models"]), "dataset": list(d["datasets"]), "method": list(d["methods"]),
                 "peft": list(d["peft"]), "seed": list(range(64)), "preference": ["helpful"]}
    d["merges"] = []
    return d


def _big_grid() -> dict:
    d = base()
    d["models"] = {f"m{i}": {"source": "org/m"} for i in range(1000)}
    d["datasets"] = {f"d{i}": {"format": "normalized", "source": "org/d"} for i in range(1000)}
    d["grid"].update(model=list(d["models"]), dataset=list(d["datasets"]), seed=list(range(1000)),
                     preference=["helpful"], method=["sft"], peft=["lora"])
    d["merges"] = []
    return d


if __name__ == "__main__":
    main()
