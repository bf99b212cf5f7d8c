"""Benchmark `alignkit collect` with its figures on a synthetic full-size study: the first run
(every figure drawn) and a second run (nothing changed: the figure cache draws nothing), each as a
ratio to a baseline timed in the same run.

Study: bench/collect_bench.py's full-size synthetic study (tests/fixtures/synthetic_study.py: 320
runs × 7 checkpoints × 5 benchmarks + the paper's merges; 840 jobs, 13,460 tidy rows). Timed in one
process:
  bare read      open and json-parse every result file collect reads (the floor of any collect)
  first collect  all formats (CSV, Parquet, Markdown, HTML, PNG/PDF/SVG figures) into an empty --out
  second collect the same again (figures and Parquet reused from the cache)
and, as separate processes, `python -c pass` against `alignkit collect --no-sacct` on the warm
output (what a person waits for at the prompt). Prints report.html's size and the figures drawn.
Usage: python bench/collect_figures_bench.py [--repeat N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignkit.collect import collect  # noqa: E402
from bench.collect_bench import bare_read  # noqa: E402
from tests.fixtures.synthetic_study import write_study  # noqa: E402


def _timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="second-collect and CLI repetitions (best of)")
    ap.add_argument("--keep", help="write the study here and keep it")
    args = ap.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="collect-fig-bench-"))
    root, out = tmp / "study", tmp / "study" / "collect"
    try:
        if not (root / "manifest.json").exists():
            write_study(root, models=("llama-7b", "vicuna-7b", "mistral-7b", "mistral-7b-instruct"),
                        datasets=("hh-rlhf", "beavertails"), pefts=("lora", "qlora"), seeds=(0, 1, 2, 3, 4),
                        steps=(100, 200, 300, 400, 500, 600), max_steps=700,
                        merge_models=("mistral-7b", "mistral-7b-instruct"), merge_datasets=("beavertails",))
        shutil.rmtree(out, ignore_errors=True)
        base = min(_timed(lambda: bare_read(root))[0] for _ in range(args.repeat))
        first, d1 = _timed(lambda: collect(root, out=out, accounting=False))
        second = []
        for _ in range(args.repeat):
            t, d2 = _timed(lambda: collect(root, out=out, accounting=False))
            second.append(t)
        exe = [sys.executable, "-m", "alignkit", "collect", str(root), "--no-sacct"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        py, cli = [], []
        for _ in range(args.repeat):
            py.append(_timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))[0])
            cli.append(_timed(lambda: subprocess.run(exe, check=True, env=env, stdout=subprocess.DEVNULL))[0])
        s, p, c = min(second), min(py), min(cli)
        size = (out / "report.html").stat().st_size
        print(f"study: {sum(sum(v.values()) for v in d1['jobs'].values())} jobs, {d1['rows']} tidy rows, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"bare read loop:            {base * 1000:9.1f} ms  1x")
        print(f"first collect (+figures):  {first * 1000:9.1f} ms  {first / base:7.1f}x the bare read "
              f"({d1['figures_drawn']} figures drawn)")
        print(f"second collect:            {s * 1000:9.1f} ms  {s / base:7.1f}x the bare read "
              f"({d2['figures_drawn']} figures drawn; best of {args.repeat})")
        print(f"python -c pass:            {p * 1000:9.1f} ms  1x")
        print(f"alignkit collect (CLI):    {c * 1000:9.1f} ms  {c / p:7.1f}x python -c pass (second run)")
        print(f"report.html: {size / 1e6:.2f} MB")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
