"""Benchmark `alignkit collect` on a synthetic full-size study, against a bare read loop.

Writes 320 training runs (4 models × 2 datasets × 2 preferences × 2 methods × 2 PEFT × 5 seeds),
each evaluated at 7 checkpoints on 5 benchmarks, plus the paper's merges and their evals, to a
temporary directory; then times, in the same process and run:
  baseline  a bare loop that opens and json-parses every result file collect reads (manifest,
            train_metrics.json, eval.json, merge.json) and nothing else;
  collect   tables + summaries (CSV, Parquet, Markdown, HTML, report.html; no plots), without and
            with the findings (findings.md/json and the report's Findings section), interleaved,
            so the ratio compares the same study on the same machine at the same time;
  collect+png   the same plus the PNG plots (only with --plots).
Usage: python bench/collect_bench.py [--plots] [--repeat N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignkit.collect import collect  # noqa: E402
from tests.fixtures.synthetic_study import write_study  # noqa: E402


def bare_read(root: Path) -> int:
    manifest = json.loads((root / "manifest.json").read_text())
    n = 0
    for job in manifest["jobs"]:
        d = root / "jobs" / job["id"]
        for name in ("train_metrics.json", "eval.json", "merge.json"):
            p = d / name
            if p.exists():
                with open(p) as f:
                    json.load(f)
                n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plots", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="write the study here and keep it")
    args = ap.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="collect-bench-"))
    root = tmp / "study"
    try:
        t = time.perf_counter()
        if not (root / "manifest.json").exists():
            write_study(root, models=("llama-7b", "vicuna-7b", "mistral-7b", "mistral-7b-instruct"),
                        datasets=("hh-rlhf", "beavertails"), pefts=("lora", "qlora"), seeds=(0, 1, 2, 3, 4),
                        steps=(100, 200, 300, 400, 500, 600), max_steps=700,
                        merge_models=("mistral-7b", "mistral-7b-instruct"), merge_datasets=("beavertails",))
        manifest = json.loads((root / "manifest.json").read_text())
        stages: dict[str, int] = {}
        for j in manifest["jobs"]:
            stages[j["stage"]] = stages.get(j["stage"], 0) + 1
        print(f"study: {stages} jobs written in {time.perf_counter() - t:.1f} s to {root}")
        formats = ("csv", "parquet", "md", "html")
        base, col, nof, png = [], [], [], []
        digest = {}
        for _ in range(args.repeat):
            t = time.perf_counter()
            files = bare_read(root)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            collect(root, out=tmp / "out-nofindings", formats=formats, accounting=False, findings=False)
            nof.append(time.perf_counter() - t)
            t = time.perf_counter()
            digest = collect(root, out=tmp / "out", formats=formats, accounting=False)
            col.append(time.perf_counter() - t)
            if args.plots:
                t = time.perf_counter()
                collect(root, out=tmp / "out-png", formats=(*formats, "png"), accounting=False)
                png.append(time.perf_counter() - t)
        b, c, n = min(base), min(col), min(nof)
        print(f"rows: {digest['rows']} tidy rows ({digest['rows_with_value']} with a value), {files} result files")
        print(f"findings: {digest['findings']}")
        print(f"bare read loop:              {b * 1000:8.1f} ms  (best of {args.repeat})")
        print(f"collect without findings:    {n * 1000:8.1f} ms  = {n / b:.1f}x the bare read")
        print(f"collect with findings:       {c * 1000:8.1f} ms  = {c / b:.1f}x the bare read, "
              f"{c / n:.2f}x collect without findings")
        if png:
            p = min(png)
            print(f"collect + plots:             {p * 1000:8.1f} ms  = {p / b:.1f}x the bare read")
        print(f"(first collect in this process, including lazy imports of pyarrow: {nof[0] * 1000:.1f} ms)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
