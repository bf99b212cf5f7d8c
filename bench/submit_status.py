"""Submit the whole study (sweeps/full.yaml) held to the dev cluster, time `status`, cancel.

  .venv/bin/python bench/submit_status.py [--spec sweeps/full.yaml] [--profile dev] [--repeat 5]

Reports: jobs, sbatch calls (arrays), submit wall time, and the time of `alignkit status --json`
over the whole study against one bare `sacct` call for the same arrays, measured in the same run
(both as subprocesses, and in-process refresh vs the sacct call alone). Needs a SLURM controller
(slurm/dev-cluster/start.sh). Everything queued is cancelled at the end.
"""

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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alignkit.submit import journal  # noqa: E402
from alignkit.backends import sacct  # noqa: E402
from alignkit.plan.compiler import load_plan  # noqa: E402
from alignkit.backends.slurm import slurm_answers  # noqa: E402
from alignkit.submit.launch import submit  # noqa: E402
from alignkit.status.state import refresh  # noqa: E402
from alignkit.submit.sweepdir import SweepDir  # noqa: E402


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(REPO / "sweeps/full.yaml"))
    ap.add_argument("--profile", default="dev")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not slurm_answers():
        print("no SLURM controller answers: bash slurm/dev-cluster/start.sh", file=sys.stderr)
        return 2
    out_dir = Path(tempfile.mkdtemp(prefix="ak-bench-submit-"))
    plan = load_plan(args.spec, args.profile, str(out_dir))
    t0 = time.perf_counter()
    res = submit(plan, executor="slurm", hold=True)
    submit_s = time.perf_counter() - t0
    sd = SweepDir.of(out_dir)
    arrays = sorted(journal.load(sd).array_ids())
    try:
        queued = sum(len(g.jobs) for g in res.groups)
        # wait until accounting lists every task (fresh arrays lag), so both sides see the same rows
        deadline = time.time() + 60
        while len(sacct.query(arrays)) < queued and time.time() < deadline:
            time.sleep(1)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        cli = [sys.executable, "-m", "alignkit", "status", str(out_dir), "--json"]
        bare = sacct.command(arrays)
        cli_s = timed(lambda: subprocess.run(cli, capture_output=True, check=True, env=env), args.repeat)
        sacct_s = timed(lambda: subprocess.run(bare, capture_output=True, check=True), args.repeat)
        refresh_s = timed(lambda: refresh(sd), args.repeat)
        sacct_inproc = timed(lambda: sacct.query(arrays), args.repeat)
        st = refresh(sd)
        result = {
            "spec": args.spec, "profile": args.profile, "jobs": len(plan.jobs), "queued": queued,
            "sbatch_calls": res.calls, "arrays": len(arrays),
            "submit_s": round(submit_s, 3),
            "status_cli_s_median": round(statistics.median(cli_s), 3),
            "bare_sacct_s_median": round(statistics.median(sacct_s), 3),
            "status_cli_over_sacct": round(statistics.median(cli_s) / statistics.median(sacct_s), 2),
            "status_refresh_s_median": round(statistics.median(refresh_s), 3),
            "sacct_query_s_median": round(statistics.median(sacct_inproc), 3),
            "refresh_over_sacct": round(statistics.median(refresh_s) / statistics.median(sacct_inproc), 2),
            "states": st.summary(),
        }
    finally:
        subprocess.run(["scancel", *arrays], capture_output=True)
    print(json.dumps(result, indent=1))
    bench_out = REPO / "bench" / "out"
    bench_out.mkdir(parents=True, exist_ok=True)
    (bench_out / "submit_status.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
