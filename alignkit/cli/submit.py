"""`alignkit submit SPEC`: create the sweep directory and queue every job that is not done or queued."""

from __future__ import annotations

import argparse
import warnings

from alignkit.cli.common import directory, positive_int
from alignkit.contract.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="queue a sweep on SLURM (or run it locally); idempotent",
                       description="Write the sweep directory (manifest, code snapshot, job dirs) and queue one "
                                   "array per stage and resource class. Re-running skips completed, pending and "
                                   "running jobs and resubmits failed, timed-out, cancelled or new ones.")
    p.add_argument("spec", help="sweep spec YAML file")
    p.add_argument("--profile", help="cluster profile name (slurm/profiles/NAME.yaml) or path")
    from alignkit import backends  # the registered executors (alignkit/backends/)
    p.add_argument("--executor", choices=backends.names(), help="override the profile's executor")
    p.add_argument("-o", "--output-dir", type=directory, help="sweep directory (default: the spec's output_dir or runs/NAME)")
    p.add_argument("--dry-run", action="store_true", help="write and print the scripts submit would queue (SLURM's for a local profile); queue nothing")
    p.add_argument("--hold", action="store_true", help="queue everything held (alignkit release starts it)")
    p.add_argument("--max-queued", type=positive_int, metavar="N",
                   help="queue at most N jobs now (the cluster's own limits apply too); "
                        "run submit again later to queue the rest")
    p.add_argument("--skip-preflight", action="store_true",
                   help="do not check that models and datasets are available offline first")
    p.set_defaults(run=run)


def preflight(plan) -> None:
    from alignkit.plan.preflight import study_assets, study_problems
    # the jobs waiting for the selection too: their assets are checked before the first phase runs
    _, missing = study_problems(study_assets([j.to_json() for j in [*plan.jobs, *plan.awaiting]]))
    if missing:
        raise UserError("\n".join([f"{len(missing)} asset(s) the study needs are not available offline "
                                   f"(run `alignkit prefetch {plan.spec_path}` or pass --skip-preflight):",
                                   *[f"  missing: {m}" for m in missing]]))


def run(args: argparse.Namespace) -> int:
    from alignkit.plan.compiler import load_plan, require_ready  # lazily: `alignkit status` must start fast
    from alignkit.backends.base import describe_dependency
    from alignkit.launch import submit
    from alignkit.plan import datacheck, selected
    plan = load_plan(args.spec, args.profile, args.output_dir)
    picked = selected.apply(plan, plan.output_dir)  # a two-phase study's second submit: the selected runs' jobs
    if not args.dry_run:
        require_ready(plan)  # missing local paths, unset judge API keys: refused before anything is written
    datacheck.check(plan, "submit")  # a sample of every dataset: refused before anything is written
    if not (args.skip_preflight or args.dry_run):
        preflight(plan)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = submit(plan, executor=args.executor, dry_run=args.dry_run, hold=args.hold,
                     max_queued=args.max_queued)
    for w in caught:
        if "alignkit" in str(w.filename) or "SLURM" in str(w.message):
            print(f"alignkit submit: warning: {w.message}")
    for note in res.warnings:
        print(f"alignkit submit: {note}")
    if res.dry_run:
        for path, g in zip(res.scripts, res.groups, strict=True):
            after = describe_dependency(g, res.groups)
            print(f"# ---- {path}  ({g.stage}: {len(g.jobs)} jobs" + (f", {after}" if after else "") + ")")
            print(g.script)
        print(f"dry run: {len(res.scripts)} job script(s) written to {res.sweep_dir / 'dry-run'}; nothing queued")
        for line in _selection_lines(plan, picked):
            print(line)
        return 0
    queued = sum(len(g.jobs) for g in res.groups)
    skipped = ", ".join(f"{n} {s}" for s, n in sorted(res.skipped.items())) or "none"
    print(f"sweep {plan.sweep} -> {res.sweep_dir}  ({res.executor}{', held' if res.hold else ''})")
    for g in res.groups:  # one line per array
        where = f"array {g.array_job_id}" if g.array_job_id else "local"
        after = describe_dependency(g, res.groups)
        print(f"  {g.stage:<6} {len(g.jobs):>5} jobs  {where}" + (f"  {after}" if after else ""))
    print(f"queued {queued} job(s) in {len(res.groups)} array(s), {res.calls} scheduler call(s); left alone: {skipped}"
          + (f"; {res.deferred} wait for the next submit" if res.deferred else ""))
    if res.hold:
        print(f"held: start them with `alignkit release {res.sweep_dir}`")
    for line in _selection_lines(plan, picked):
        print(line)
    return 0


def _selection_lines(plan, picked) -> list[str]:
    """What the selection added (a two-phase study, docs/collect.md) and what still waits for it."""
    out = list(picked.notes)
    if picked.source is not None:
        stages = ", ".join(f"{sum(j.stage == s for j in picked.added)} {s}" for s in ("eval", "judge")
                           if any(j.stage == s for j in picked.added))
        out.append(f"selection ({picked.source}): {picked.runs} run(s) picked; their {stages or 'no'} job(s) of "
                   f"runs: selected benchmarks are in the study"
                   + (f"; {picked.dropped} job(s) of runs not picked are not run" if picked.dropped else ""))
    if plan.awaiting:
        n = len(plan.awaiting)
        out.append(f"waiting for the selection: {n} job(s) of runs: selected benchmarks; once the runs select: "
                   f"compares have ended, run `alignkit collect {plan.output_dir}`, then `alignkit submit` again")
    return out
