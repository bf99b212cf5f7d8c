"""False-verdict rates of the findings on simulated null studies of the full-size shape.

Writes one study (tests/fixtures/null_study.py: 320 runs, the mixture, the merges) and redraws
every eval value as noise around a constant per benchmark `--sims` times: no effect anywhere, so
every better/worse verdict and every judged takeaway is false. Prints, at the final checkpoint:
the raw tests' share with p < 0.05, the share of comparisons tables with any (corrected) verdict,
the share of takeaways judged, and the merge rows. `--seeds K` keeps seeds 0..K-1; `--unpaired`
relabels DPO's seeds so the method comparisons cannot pair (Welch's t). `--code DIR` measures the
alignkit of another checkout (e.g. main before issue 25) with this checkout's simulated study
(docs/collect.md, Calibration).
Usage: python bench/findings_null.py [--sims 200] [--seeds 5] [--unpaired] [--code DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
VERDICTS = {"better", "worse", "higher", "lower"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--unpaired", action="store_true")
    ap.add_argument("--code", type=Path, default=HERE, help="the checkout whose alignkit is measured")
    args = ap.parse_args()
    sys.path[:0] = [str(args.code.resolve()), str(HERE)]   # its alignkit; this checkout's fixtures after it
    from alignkit.collect import _configured_metrics, findings, summary, tidy
    from alignkit.collect.study import load_study

    spec = importlib.util.spec_from_file_location("null_study", HERE / "tests" / "fixtures" / "null_study.py")
    null_study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(null_study)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "null"
        null_study.full_shape(root)
        study = load_study(root, accounting=False)
        rows = tidy.build_rows(study)
    primary = summary.primary_metrics(_configured_metrics(study), rows)
    rows = [r for r in rows if r.get("seed") is None or r["seed"] < args.seeds]
    if args.unpaired:
        rows = [{**r, "seed": r["seed"] + 100} if r.get("method") == "dpo" else r for r in rows]
    at_final = getattr(findings, "at_checkpoint", findings.compute)   # older code: final only
    raw = tests = tables = judged = n_comp = verdicts = 0
    merge = [0, 0]
    t0 = time.perf_counter()
    for sim in range(args.sims):
        f = at_final(study, null_study.redraw(rows, sim), primary, True)
        ps = [getattr(c.interval, "p", None) for c in f.comparisons]
        tests += sum(p is not None for p in ps)
        raw += sum(p is not None and p < 0.05 for p in ps)
        v = [c.verdict in VERDICTS for c in f.comparisons]
        n_comp += len(v)
        verdicts += sum(v)
        tables += any(v)
        judged += sum(t.verdict in ("supported", "contradicted", "mixed") for t in f.takeaways)
        for c in f.comparisons:
            if c.section.startswith("merge ") and c.b != "mean of inputs":
                merge[0] += 1
                merge[1] += c.verdict in VERDICTS
    n = args.sims
    print(f"{n} null studies, {args.seeds} seeds, {'unpaired' if args.unpaired else 'paired'} "
          f"({time.perf_counter() - t0:.0f} s); {n_comp // n} comparisons per study")
    print(f"raw tests p < 0.05: {raw}/{tests} = {raw / max(tests, 1):.3f}")
    print(f"comparisons with a verdict: {verdicts}/{n_comp} = {verdicts / n_comp:.3f}; "
          f"tables with any: {tables}/{n} = {tables / n:.3f}")
    print(f"takeaways judged: {judged}/{6 * n} = {judged / (6 * n):.3f}")
    print(f"merge vs input rows with a verdict: {merge[1]}/{merge[0]}")


if __name__ == "__main__":
    main()
