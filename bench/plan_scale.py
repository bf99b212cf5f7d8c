"""`alignkit plan` of a 100,000-job grid (issue 22 item 7): wall time, CPU time and peak memory of
the text summary, `--json` and `--json --summary`, against `python -c pass` in the same run.

Run: .venv/bin/python bench/plan_scale.py [--repeat 3]. The grid is the unit tests' spec
(tests/fixtures/spec_fixtures.py: 2 models x 2 datasets x 2 preferences x 2 methods x 2 PEFT, evals
with a judge, a merge) with 695 seeds: 22,240 training runs, 100,080 jobs. Each figure is the
median of fresh processes; peak memory is the child's maximum resident set (wait4)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.fixtures.spec_fixtures import base  # noqa: E402

SEEDS = 695  # 144 jobs per seed


def measure(cmd: list[str], out_path: str, tree: Path = ROOT) -> tuple[float, float, float]:
    """(wall s, user+sys CPU s, peak RSS MiB) of one fresh process, stdout to out_path."""
    env = {**os.environ, "KEY": "x", "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    with open(out_path, "wb") as out:
        pid = os.fork()
        if pid == 0:
            os.dup2(out.fileno(), 1)
            os.execvpe(cmd[0], cmd, env)
        _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    assert os.waitstatus_to_exitcode(status) == 0, cmd
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", type=Path, metavar="CHECKOUT",
                    help="also time another checkout's alignkit (e.g. the main branch) in the same run")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plan-scale-"))
    d = base()
    d["grid"]["seed"] = list(range(SEEDS))
    spec = tmp / "grid.yaml"
    spec.write_text(yaml.safe_dump(d))
    out = str(tmp / "out")
    py = sys.executable
    cases = {"python -c pass": [py, "-c", "pass"],
             "plan (text summary)": [py, "-m", "alignkit", "plan", str(spec)],
             "plan --json": [py, "-m", "alignkit", "plan", str(spec), "--json"],
             "plan --json --summary": [py, "-m", "alignkit", "plan", str(spec), "--json", "--summary"]}
    base_wall = None
    os.chdir(tmp)
    trees = [("", ROOT)] + ([(f" [{args.before}]", args.before.resolve())] if args.before else [])
    for (label, tree), (name, cmd) in ((t, c) for t in trees for c in cases.items()):
        if label and (name == "python -c pass" or "--summary" in cmd):  # no --summary before
            continue
        name += label
        runs = [measure(cmd, out, tree) for _ in range(args.repeat)]
        wall, cpu, rss = (statistics.median(r[i] for r in runs) for i in range(3))
        size = os.path.getsize(out)
        base_wall = base_wall or wall
        print(f"{name:<36} wall {wall:5.2f} s ({wall / base_wall:5.1f}x python -c pass)  cpu {cpu:5.2f} s  "
              f"peak {rss:5.0f} MiB  stdout {size / 1e6:7.1f} MB")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
