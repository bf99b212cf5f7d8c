"""The data check's cost (alignkit/plan/datacheck.py): `alignkit plan` wall time on a one-run spec
whose dataset is a large local file (JSON lines, parquet, both 200,000 rows) against the same spec
on a hub dataset that is not cached (the check reads nothing: the baseline), in the same run. Each
figure is the median of fresh processes; the difference is what the check adds per dataset (the
tokenizer's template render included: the tiny model's tokenizer files are local).

Run: .venv/bin/python bench/datacheck_time.py [--repeat 5]."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROWS = 200_000


def spec(tmp: Path, source: str) -> Path:
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj"]}
    path = tmp / f"spec-{abs(hash(source))}.yaml"
    path.write_text(yaml.safe_dump({
        "name": "bench", "output_dir": str(tmp / "sweep"),
        "models": {"tiny": {"source": str(ROOT / "assets" / "tiny-llama"), "dtype": "float32"}},
        "datasets": {"d": {"source": source}},
        "methods": {"dpo": {"type": "dpo", "learning_rate": 1e-4, "lora": lora}},
        "peft": {"lora": {"quantization": None}},
        "training": {"max_steps": 2, "save_steps": 2},
        "grid": {"model": ["tiny"], "dataset": ["d"], "preference": ["all"], "method": ["dpo"], "peft": ["lora"],
                 "seed": [0]}}))
    return path


def wall(path: Path, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "alignkit", "plan", str(path)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    repeat = ap.parse_args().repeat
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = [{"prompt": f"question {i}?", "chosen": "a" * 200, "rejected": "b" * 200} for i in range(ROWS)]
        with open(tmp / "big.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp / "big.parquet")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_CACHE": str(tmp / "empty-cache")}
        cases = {"baseline (hub dataset not cached: nothing read)": spec(tmp, "org/not-cached"),
                 f"JSON lines, {ROWS:,} rows ({(tmp / 'big.jsonl').stat().st_size >> 20} MiB)": spec(tmp, str(tmp / "big.jsonl")),
                 f"parquet, {ROWS:,} rows ({(tmp / 'big.parquet').stat().st_size >> 20} MiB)": spec(tmp, str(tmp / "big.parquet"))}
        times = {name: [] for name in cases}
        for _ in range(repeat):  # interleaved, so drift in the machine's load hits every case alike
            for name, path in cases.items():
                times[name].append(wall(path, env))
        base = statistics.median(next(iter(times.values())))
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:<52} {med:6.2f} s  x{med / base:4.2f}  (+{med - base:5.2f} s)")


if __name__ == "__main__":
    main()
