"""`alignkit plan SPEC [--json]`: what a spec would submit, without submitting anything."""

from __future__ import annotations

import argparse
import gc
import io
import sys

from alignkit.cli.common import directory
from alignkit.contract.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="show the jobs, arrays and GPU-hours a sweep spec compiles to",
                       description="Validate and compile a sweep spec; print a summary (or the full job graph "
                                   "with --json: docs/cli.md documents its fields).")
    p.add_argument("spec", help="sweep spec YAML file")
    p.add_argument("--profile", help="cluster profile name (slurm/profiles/NAME.yaml) or path")
    p.add_argument("--json", action="store_true", help="print the full plan as JSON for scripts")
    p.add_argument("--summary", action="store_true",
                   help="with --json: the summary without the jobs list (a 100,000-job plan is ~130 MB of JSON)")
    p.add_argument("-o", "--output-dir", type=directory, help="sweep directory (default: the spec's output_dir or runs/NAME)")
    p.set_defaults(run=run)


# Plans up to this size are encoded whole before printing, so a value JSON cannot hold prints nothing
# half-written; larger ones stream (their configs come from the same checked spec types).
_CHECK_FIRST = 20_000


def run(args: argparse.Namespace) -> int:
    # the plan's ~10 objects per job live until it is printed and hold no cycles: the cycle
    # collector would only re-scan them as they grow (a quarter of a 100,000-job plan's time)
    was = gc.isenabled()
    gc.disable()
    try:
        return _run(args)
    finally:
        # what is still alive goes to the permanent generation: the interpreter's collection at
        # exit skips it (another ~0.3 s at 100,000 jobs); refcounting still frees it as usual
        gc.freeze()
        if was:
            gc.enable()


def _lm_eval_needs(plan) -> None:
    """A missing package is an error (prefetch cannot fix it); missing nltk data a warning (prefetch
    downloads it; submit refuses until then), as for models not yet in the cache."""
    from alignkit.contract.lm_eval_needs import benchmark_needs
    from alignkit.plan.preflight import lm_eval_benchmarks

    from alignkit.contract.serial import to_json

    sets: dict[int, dict] = {}  # eval jobs share their benchmark sets: each read once, as config.json has it
    for j in [*plan.jobs, *plan.awaiting]:
        if j.stage == "eval" and id(j.config.benchmarks) not in sets:
            sets[id(j.config.benchmarks)] = {"benchmarks": to_json(j.config.benchmarks)}
    benchmarks = lm_eval_benchmarks(list(sets.values()))
    errors = benchmark_needs(benchmarks, data=False)
    if errors:
        raise UserError("\n".join(f"{plan.spec_path}: evals.benchmarks.{name}: {line}" for name, line in errors))
    for name, line in benchmark_needs(benchmarks, packages=False):
        print(f"alignkit plan: warning: evals.benchmarks.{name}: {line}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from alignkit.plan.compiler import load_plan  # lazily: every `alignkit` command imports this module
    from alignkit.plan import datacheck
    plan = load_plan(args.spec, args.profile, args.output_dir)
    datacheck.check(plan, "plan")  # a sample of every dataset through its format, template and tokenizer
    if "lm_eval" in plan.spec_text:  # lm-eval tasks needing packages or data missing here (no task index: ~0.1 s)
        _lm_eval_needs(plan)
    for line in plan.not_ready:  # fine to plan; `submit` refuses until they are fixed
        print(f"alignkit plan: warning: {line}", file=sys.stderr)
    from alignkit.plan import advice as plan_advice  # settings that run but deserve a look: warnings only

    for line in plan_advice.lines(plan):
        print(f"alignkit plan: warning: {line}", file=sys.stderr)
    if args.json:
        from alignkit.plan.planjson import write_plan_json
        buffer = io.StringIO() if not args.summary and len(plan.jobs) <= _CHECK_FIRST else None
        try:  # strict JSON: a NaN or infinity is a bug to report, never a bare NaN token
            write_plan_json(plan, buffer or sys.stdout, summary_only=args.summary)
        except ValueError as exc:
            raise UserError(f"{plan.spec_path}: the plan holds a value JSON cannot represent ({exc})") from None
        if buffer is not None:
            sys.stdout.write(buffer.getvalue())
        return 0
    s = plan.summary()
    out = [f"sweep {plan.sweep}: {s['jobs']} jobs -> {plan.output_dir}  (profile: {plan.profile.name})",
           "  " + ", ".join(f"{n} {stage}" for stage, n in s["jobs_per_stage"].items())
           + f"  ({s['training_runs']} training runs, {s['mixture_runs']} on preference mixtures)",
           f"  {len(s['arrays'])} groups (stage x resource class x upstream group; each queued as one SLURM array, "
           f"split beyond MaxArraySize):"]
    for a in s["arrays"]:
        part = "".join(f" {k}={a[k]}" for k in ("partition", "account", "qos", "constraint") if a.get(k))
        after = f" (after {a['after']})" if a["after"] else ""
        out.append(f"    {a['stage'] + after:<28} {a['jobs']:>5} jobs  nodes={a['nodes']} gpus={a['gpus']} cpus={a['cpus']} "
                   f"mem={a['mem_gb']}G "
                   f"time={a['time_min']}min throttle=%{a['array_parallelism']}{part}")
    swept = [a for a in plan.axes if "." in a]
    if swept:
        out.append(f"  dotted axes: {', '.join(swept)}")
    from alignkit.plan.epochs import epoch_lines  # training.num_train_epochs: the steps plan can foresee

    out += epoch_lines(plan.jobs)
    if plan.select:
        sel = plan.select
        out.append(f"  select: {sel['goal']} {sel['metric']} over {', '.join(sel['over'])}"
                   + (f" by {', '.join(sel['by'])}" if sel["by"] else "") + f" at {sel['checkpoint']}")
    if plan.awaiting:  # a two-phase study: jobs of `runs: selected` benchmarks (alignkit/plan/selected.py)
        from alignkit.plan.selected import describe
        out.append(describe(plan))
        out += ["  " + line for line in judge_lines(s["awaiting_selection"]["judges"])]
    hours = ", ".join(f"{k} {v:g}" for k, v in s["gpu_hours"].items() if v)
    out.append(f"  estimated GPU-hours: {s['gpu_hours_total']:g}" + (f" ({hours})" if hours else ""))
    out += estimate_lines(s["estimates"])
    if s["reference_pass_runs"]:
        out.append(f"  DPO reference log-probs: {s['reference_passes']} shared passes for {s['reference_pass_runs']} runs"
                   + (f"; {s['reference_inline_runs']} compute their own" if s["reference_inline_runs"] else ""))
    out += judge_lines(s["judges"])
    if args.profile:
        out += _cluster_lines(plan)
    print("\n".join(out))
    return 0


def estimate_lines(e: dict) -> list[str]:
    """Eval GPU-hours per benchmark (from alignkit/plan/eval_rates.json), CPU-hours, the wall-clock."""
    r = e["eval_rates"]
    out = [f"  eval estimate: {'rates measured on ' + str(r['device']) if r['measured'] else 'a GUESS (no GPU has measured the rates yet)'}"
           f" from {r['file']}" + ("" if r["measured"] else "; its basis is stated there and in docs/gpu.md")]
    for name, b in e["eval_benchmarks"].items():
        each = f"{b['gpu_s_per_checkpoint']:,.0f} s each" if "gpu_s_per_checkpoint" in b else "work unknown"
        out.append(f"    {name:<26} {b['checkpoint_evals']:>7,} checkpoint evals x {each:<16} {b['gpu_hours']:>9,.1f} GPU-h")
    if e["eval_jobs_on_stage_estimate"]:
        out.append(f"    {e['eval_jobs_on_stage_estimate']} eval jobs have a benchmark of unknown size: the stage's "
                   f"`estimate` stands for them")
    cpu = ", ".join(f"{k} {v['cpu_hours']:,.1f}" for k, v in e["stages"].items() if not v["gpu_hours"] and v["jobs"])
    if cpu:
        out.append(f"  CPU-hours (jobs without a GPU): {cpu}")
    w = e["wall_clock"]
    out.append(f"  expected wall-clock at the array throttles: {w['hours']:,.1f} h ("
               + ", ".join(f"{k} done at {v:,.1f} h" for k, v in w["stage_done_at_hours"].items())
               + "; each array after the arrays it waits on, no queue wait)")
    return out


def judge_lines(judges: dict) -> list[str]:
    """The judges' calls, tokens (estimates, docs/spec.md "Judge cost") and cost where priced."""
    out = []
    for name, j in judges.items():
        price = j["price_per_million_tokens"]
        cost = (f"~${j['cost_usd']:,.0f} at ${price['input']:g} / ${price['output']:g} per million input / "
                f"output tokens" if price else "no price_per_million_tokens given: cost not estimated")
        out.append(f"  judge {name} ({j['type']} {j['model']}): {j['calls']:,} calls, ~{j['input_tokens'] / 1e6:,.1f}M "
                   f"input + {j['output_tokens'] / 1e6:,.1f}M output tokens (upper bound), {cost}")
        for bench, b in j["benchmarks"].items():
            out.append(f"    {bench:<26} {b['calls']:>10,} calls at checkpoints {', '.join(b['checkpoints'])}")
    return out


def _cluster_lines(plan) -> list[str]:
    """The profile's scheduler's limits and what they mean here: arrays split, submit in waves
    (none for an executor that keeps no queue limits, such as local)."""
    from alignkit import backends
    from alignkit.submit.launch import describe_limits
    backend = backends.get(plan.profile.executor)
    if (why := backend.unreachable()) is not None:
        return [f"  cluster limits: unknown ({why})"]
    return ["  " + line.strip() for line in describe_limits(plan, backend.limits(plan))]
