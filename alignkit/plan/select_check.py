"""Plan-time checks of a spec's `select:` against what the study will measure (issue 25, item 6).

Three refusals, each one located line (docs/spec.md, "select"):
  - a `select.metric` the study will not produce, with "did you mean" the closest it will;
  - a `select.goal` against the metric's known direction (min of an accuracy, max of a loss);
  - a loss chosen over a field that changes the loss itself: the method type (`over: [method]` across
    methods of different types or loss settings) or a loss field as a dotted axis (`method.beta`,
    `method.loss_type`, ...). DPO's loss is −log σ(β·margin): at another β it is another function,
    so its value says nothing about which run is better.
What the study will produce: `validation_loss` and `validation_<m>` for each logged metric m of its
methods (only when a dataset holds out a validation split), `train/<name>` for the train rows
collect reads (alignkit/collect/tidy.py), each benchmark name, and `<benchmark>/<metric>`.
"""

from __future__ import annotations

import difflib
from typing import Any

from alignkit.contract.schema import Problems

# Fields whose value changes the training loss's definition (not just the run that minimises it).
LOSS_FIELDS = ("beta", "loss_type", "label_smoothing", "simpo_gamma", "cpo_alpha", "desirable_weight",
               "undesirable_weight", "completion_only_loss")
# Headline metric each benchmark type writes (alignkit/plugins/benchmarks/*_run.py entry "metric"); lm_eval: its `metric:`.
HEADLINE = {"alpaca_eval": "win_rate", "realtoxicity": "toxicity_logit", "red_instruct": "safety"}
# Directions beyond the findings' METRIC_DIRECTION (True: higher is better).
EXTRA_DIRECTION = {"reward_accuracy": True, "reward_margin": True, "token_accuracy": True,
                   "length_controlled_winrate": True, "discrete_win_rate": True}


def _method_types(spec: Any) -> dict[str, Any]:
    """The spec's methods the study runs (named in grid, zip or include), by name; all when none is named."""
    named: list[Any] = []
    for mapping in (spec.grid, *spec.zip, *spec.include):
        v = mapping.get("method") if isinstance(mapping, dict) else None
        named += list(v) if isinstance(v, (list, tuple)) else [] if v is None else [v]
    used = {n: spec.methods[n] for n in named if isinstance(n, str) and n in spec.methods}
    return used or dict(spec.methods)


def produced(spec: Any) -> tuple[list[str], list[str]]:
    """(the metric names the study will produce, the benchmark names)."""
    from alignkit.collect.tidy import TRAIN_METRICS
    from alignkit.plugins.methods import METHODS

    logged = ["loss"]
    for m in _method_types(spec).values():
        try:
            logged += list(METHODS.get(m.type).metrics.values())
        except KeyError:   # an unknown type is refused by the methods' own check
            continue
    logged = list(dict.fromkeys(logged))
    names: list[str] = []
    if any(d.validation is not None for d in spec.datasets.values()):
        names += [f"validation_{k}" for k in logged]
    names += [f"train/{k}" for k in (*TRAIN_METRICS, *logged)]
    names += [f"train/dpo_{k}" for k in ("reward_accuracy", "reward_margin", "first_reward_accuracy")]
    benches = list(spec.evals.benchmarks)
    return names + benches, benches


def _headline(spec: Any, bench: str) -> str | None:
    b = spec.evals.benchmarks.get(bench)
    if b is None:
        return None
    return getattr(b, "metric", None) or HEADLINE.get(getattr(b, "type", ""))


def direction(spec: Any, metric: str) -> bool | None:
    """True: higher is better; False: lower; None: unknown."""
    from alignkit.collect.findings import METRIC_DIRECTION

    bench, _, sub = metric.partition("/")
    if metric.startswith("validation_"):
        name = metric[len("validation_"):]
    elif bench == "train":
        name = sub.removeprefix("dpo_").removeprefix("first_")
    else:
        name = sub or _headline(spec, bench) or ""
    if name.endswith("loss"):
        return False
    known = {**METRIC_DIRECTION, **EXTRA_DIRECTION}
    return known.get(name)


def is_loss(metric: str) -> bool:
    if metric.startswith("validation_"):
        return metric.endswith("loss")
    bench, _, sub = metric.partition("/")
    return bench == "train" and sub.endswith("loss")


def check(spec: Any, problems: Problems) -> None:
    s = spec.select
    if s is None:
        return
    names, benches = produced(spec)
    bench = s.metric.partition("/")[0]
    if s.metric not in names and not (bench in benches and "/" in s.metric):
        close = difflib.get_close_matches(s.metric, names, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        if s.metric.startswith("validation_") and not any(d.validation is not None for d in spec.datasets.values()):
            problems.add("select.metric", f"{s.metric!r}: no dataset holds out a validation split "
                                          "(set datasets.<name>.validation)")
        else:
            problems.add("select.metric", f"{s.metric!r} is not a metric this study produces; {hint}"
                                          f"(known: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''})")
        return
    b = spec.evals.benchmarks.get(bench)
    if b is not None and b.runs == "selected":
        problems.add("select.metric", f"{s.metric!r}: benchmark '{bench}' runs only on the runs the selection picks "
                                      f"(evals.benchmarks.{bench}.runs: selected), so it cannot choose them; "
                                      f"choose on a metric every run has")
        return
    up = direction(spec, s.metric)
    if up is not None and s.goal in ("min", "max") and s.goal != ("max" if up else "min"):
        problems.add("select.goal", f"{s.goal} of {s.metric!r}, whose {'higher' if up else 'lower'} values are "
                                    f"better: did you mean goal: {'max' if up else 'min'}?")
    if is_loss(s.metric):
        _check_loss(spec, s, problems)


def _check_loss(spec: Any, s: Any, problems: Problems) -> None:
    why = ("a loss compared across values that change the loss itself is not comparable (DPO's "
           "−log σ(β·margin) at another β is another function); choose on a benchmark or a metric such "
           "as validation_reward_accuracy, or put the axis in select.by")
    for i, axis in enumerate(s.over):
        section, _, field = axis.partition(".")
        if section == "method" and field in LOSS_FIELDS:
            problems.add(f"select.over[{i}]", f"{s.metric!r} over '{axis}': {why}")
        elif axis == "method":
            methods = _method_types(spec).values()
            kinds = {(m.type, *(getattr(m, f, None) for f in LOSS_FIELDS)) for m in methods}
            if len(kinds) > 1:
                types = sorted({m.type for m in methods})
                what = f"types {', '.join(types)}" if len(types) > 1 else "loss settings"
                problems.add(f"select.over[{i}]", f"{s.metric!r} over 'method' (methods of different {what}): {why}")


def check_runs(spec: Any, name: str, b: Any, path: str, problems: Problems) -> None:
    """`runs: selected` needs a `select:` to pick the runs (docs/collect.md "Two-phase studies")."""
    from alignkit.contract.schema import join

    if b.runs == "selected" and spec.select is None:
        problems.add(join(path, "runs"), "'selected' evaluates only the runs select: picks, and this spec has no "
                                         "select: (add one, or use runs: all)")
