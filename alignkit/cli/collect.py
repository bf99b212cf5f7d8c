"""`alignkit collect [SWEEP_DIR]`: results on disk → tables, summaries, plots, report, checkpoint index.

With `--prune`, instead lists (or with `--yes` deletes) optimizer states and intermediate
checkpoints that no eval uses, and reports the bytes freed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignkit.cli.common import directory
from alignkit.contract.errors import UserError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "collect", help="gather a study's results: tidy table, summaries vs the paper, plots, report, index",
        description="Read a sweep directory (manifest, result files, journal, the scheduler's accounting if present) and write a tidy "
                    "long table (CSV/Parquet), mean ± std summaries beside the paper's numbers (Markdown/HTML), "
                    "plots (PNG), report.html and a checkpoint index. Corrupt result files are listed, not fatal.")
    p.add_argument("sweep_dir", nargs="?", metavar="SWEEP_DIR", type=directory,
                   help="the sweep's output directory (holds manifest.json); default: the current directory, else the newest sweep under runs/")
    p.add_argument("--out", metavar="DIR", type=directory, help="where to write (default: SWEEP_DIR/collect)")
    p.add_argument("--format", default="csv,parquet,md,html,png", metavar="LIST",
                   help="comma-separated subset of csv,parquet,md,html,png (default: all)")
    p.add_argument("--json", action="store_true", help="print a JSON digest (files, counts, problems, best) on stdout")
    p.add_argument("--metric", metavar="NAME",
                   help="pick the best checkpoint per run by BENCHMARK[/METRIC][:min], e.g. mmlu/acc or "
                        "red_instruct/asr:min (default: higher is better)")
    p.add_argument("--no-sacct", action="store_true", help="do not query SLURM accounting (wall time then comes "
                                                           "from the result files)")
    p.add_argument("--prune", action="store_true",
                   help="list optimizer states and intermediate checkpoints no eval uses (finished runs only)")
    p.add_argument("--show", action="store_true",
                   help="also print the summary table (mean ± std over seeds at the final checkpoint)")
    p.add_argument("--yes", action="store_true", help="with --prune: delete them")
    p.set_defaults(run=run)
    return p


def _prune(args) -> int:
    from alignkit.collect import prune
    from alignkit.collect.study import load_study
    from alignkit.contract.fsio import describe_os_error

    study = load_study(args.sweep_dir, accounting=False)
    skipped: list[str] = []
    cands = prune.candidates(study, skipped)
    total = sum(c.bytes for c in cands)
    freed, removed, failed = (prune.apply(cands, study.root) if args.yes else (0, [], []))
    gone = set(removed)
    if args.json:
        print(json.dumps({"dry_run": not args.yes, "candidates": [c.__dict__ for c in cands], "bytes": total,
                          "freed_bytes": freed, "removed": removed, "skipped": skipped,
                          "failed": [describe_os_error(e) for _, e in failed]}, indent=1))
    else:
        for c in cands:
            if not args.yes or c.path in gone:  # "removed" only for what is gone
                print(f"{'removed' if args.yes else 'would remove'}  {prune.human(c.bytes):>10}  {c.path}  "
                      f"({c.reason})")
        for s in skipped:
            print(f"skipped {s}")
        if args.yes and not failed:
            print(f"freed {prune.human(freed)} in {len(removed)} paths")
        elif not args.yes:
            print(f"{len(cands)} paths, {prune.human(total)} can be freed; run again with --yes to delete them")
    if failed:  # a read-only or failing filesystem: one line, exit 2; each path is whole or gone
        raise UserError(f"could not remove {len(failed)} of {len(cands)} paths (first: "
                        f"{describe_os_error(failed[0][1])}); removed {len(removed)}, freed {prune.human(freed)}")
    return 0


def _md_table(text: str) -> tuple[str, list[str], list[list[str]]]:
    """(title, columns, rows) of the first table in a summary.md section (as summary.py writes it)."""
    import re

    lines = text.splitlines()
    title = lines[0].strip()
    cells = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
             for line in lines if line.startswith("|")]
    return title, cells[0], [r for r in cells[2:]]


def show_lines(digest: dict, width: int) -> list[str]:
    """The summary's first table (all runs at the final checkpoint) fitted to `width` columns with
    status's renderer (alignkit/statusview.py): axes with one value go to a line above it, then
    "(n=…)" is dropped, then labels are cut, then trailing benchmarks are left out (named)."""
    import re
    from pathlib import Path

    from alignkit.statusview import clip, render_table

    md = next((Path(f) for f in digest["files"] if f.endswith("summary.md")), None)
    if md is None or not md.exists():
        return ["  (no summary.md: add md to --format)"]
    sections = md.read_text(encoding="utf-8").split("\n### ")
    if len(sections) < 2:
        return []
    title, head, rows = _md_table(sections[1])
    n_axes = next((i for i, h in enumerate(head) if "(" in h), len(head))
    fixed = []
    for i in reversed(range(n_axes)):
        vals = {r[i] for r in rows if r[i]}
        if len(vals) <= 1 and len(head) > 2:
            if vals:
                fixed.append(f"{head[i]}={vals.pop()}")
            head, rows, n_axes = head[:i] + head[i + 1:], [r[:i] + r[i + 1:] for r in rows], n_axes - 1
    metrics = [h.partition(" (")[2].rstrip(")") for h in head[n_axes:]]
    head = head[:n_axes] + [h.partition(" (")[0] for h in head[n_axes:]]
    out = [clip(title, width)]
    if any(metrics):
        out.append(clip("metric: " + ", ".join(f"{h} {m}" for h, m in zip(head[n_axes:], metrics, strict=True)), width))
    if fixed:
        out.append(clip("one value only: " + ", ".join(reversed(fixed)), width))
    table = render_table(head, rows, width, tuple(range(n_axes)))
    if max(len(line) for line in table) >= width or any(line.startswith("…") for line in table):
        rows = [[re.sub(r" \(n=\d+\)$", "", c) for c in r] for r in rows]
        out.append(clip("(n = seeds omitted to fit; see summary.md)", width))
        table = render_table(head, rows, width, tuple(range(n_axes)))
    return out + table


def _show_summary(digest: dict) -> None:
    import shutil

    print("\n".join(show_lines(digest, shutil.get_terminal_size().columns)) + "\n")


def run(args) -> int:
    from alignkit.collect import collect, parse_formats

    from alignkit.status import open_sweep
    if args.sweep_dir is None:
        args.sweep_dir = str(open_sweep(None, "collect").root)
    if args.yes and not args.prune:
        raise UserError("--yes only goes with --prune")
    if args.prune:
        return _prune(args)
    digest = collect(args.sweep_dir, out=args.out, formats=parse_formats(args.format), metric=args.metric,
                     accounting=not args.no_sacct)
    if args.json:
        print(json.dumps(digest, indent=1))
        return 0
    print(f"{digest['sweep']}: {digest['rows']} result rows ({digest['rows_with_value']} with a value) "
          f"from {sum(sum(s.values()) for s in digest['jobs'].values())} jobs in {digest['seconds']:.2f} s")
    for stage, states in sorted(digest["jobs"].items()):
        print(f"  {stage:6s} " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    print(f"  accounting: {digest['accounting']}")
    if digest["best"] is not None:
        print(f"  best checkpoint per run by {digest['metric']}: {len(digest['best'])} runs (best_checkpoints.csv)")
    sel = digest.get("selection")
    if sel:
        print(f"  selection ({sel['goal']} {sel['metric']} over {', '.join(sel['over'])}; selection.csv):")
        for g in sel["groups"]:
            by = ", ".join(f"{a}={g.get(a)}" for a in sel["by"]) or "all runs"
            pick = ", ".join(f"{a}={g.get(a)}" for a in sel["over"]) if g.get("value") is not None else "none yet"
            print(f"    {by}: {pick}" + (f" ({g['note']})" if g.get("note") else ""))
    if digest.get("awaiting_selection"):  # a two-phase study: the selection decides what runs next
        from alignkit.plan.selected import SELECTION_FILE
        read = Path(digest["sweep_dir"]) / SELECTION_FILE
        where = "" if Path(digest["out"]) / "collect.json" == read else f" (it reads {read}: collect without -o)"
        print(f"  {digest['awaiting_selection']} job(s) of runs: selected benchmarks wait for the selection: "
              f"`alignkit submit` on the spec adds the picked runs' ones{where}")
    if digest.get("capped_answers"):
        c = digest["capped_answers"]
        print(f"  capped answers: {c['answers']} of {c['of']} in {c['entries']} eval entries had fewer new tokens "
              f"than max_new_tokens (the model's context; {c['no_room']} with no room at all): capped.csv")
    for p in digest["problems"]:
        print(f"  skipped {p['path']}: {p['reason']}")
    if args.show:
        _show_summary(digest)
    print(f"wrote {len(digest['files'])} files to {digest['out']}"
          + (f"; open {digest['out']}/report.html" if any(f.endswith('report.html') for f in digest['files']) else ""))
    return 0
