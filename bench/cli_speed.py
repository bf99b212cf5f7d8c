"""CLI latency: `alignkit --help` and `alignkit plan sweeps/full.yaml`, against `python -c pass`.

Run: .venv/bin/python bench/cli_speed.py [--repeat N]. Prints medians and ratios to the baseline
measured in the same run (interpreter start-up is the floor any Python CLI pays).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def median_wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    py = sys.executable
    base = median_wall([py, "-c", "pass"], args.repeat)
    rows = [("python -c pass", base)]
    rows.append(("alignkit --help", median_wall([py, "-m", "alignkit", "--help"], args.repeat)))
    rows.append(("alignkit plan sweeps/full.yaml", median_wall([py, "-m", "alignkit", "plan", "sweeps/full.yaml"], args.repeat)))
    rows.append(("alignkit plan sweeps/full.yaml --json",
                 median_wall([py, "-m", "alignkit", "plan", "sweeps/full.yaml", "--json"], args.repeat)))
    print(f"{'command':<40} {'median s':>9} {'x baseline':>11}")
    for name, t in rows:
        print(f"{name:<40} {t:>9.3f} {t / base:>11.1f}")


if __name__ == "__main__":
    main()
