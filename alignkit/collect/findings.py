"""Findings: the study's questions answered from its own data, with 95% intervals and corrected verdicts.

Unit: one checkpoint's primary metric of each benchmark (the final one, and each evaluated
intermediate step), one value per run (seed). A comparison is a contrast between cells (an axis
value, or a merge and one of its inputs) matched on every other axis, averaged over those matched
contexts; stats.py gives its interval and p-value (paired t over seeds when the cells share seeds,
else Welch's t). Verdicts come from corrected p-values: Benjamini–Hochberg across a checkpoint's
comparisons table, Holm within each takeaway's evidence. Axes come from the manifest
(each eval job's `axes`) and the tidy rows' columns, so a newly swept axis is compared without
code here. The paper's takeaways are judged only for a study with the paper's models and
datasets (summary.is_paper_study). Method and rules: docs/collect.md, "Findings".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from alignkit.collect import stats, target_compare
from alignkit.collect.study import Study
from alignkit.collect.tidy import AXIS_COLUMNS, axis_value
from alignkit.contract import paths

# Direction of a metric when its result entry does not say (`higher_is_better`, as the eval and
# judge jobs and lm-eval write it). Unknown metrics get verdicts "higher"/"lower", not better/worse.
METRIC_DIRECTION = {"acc": True, "acc_norm": True, "exact_match": True, "f1": True, "win_rate": True,
                    "lc_win_rate": True, "safety": True, "toxicity_logit": True,
                    "asr": False, "toxicity": False, "perplexity": False, "word_perplexity": False, "loss": False}
NOT_COMPARED = ("seed", "merge", "target")   # seed = the replicate; merges are compared with their inputs;
                                             # evaluated targets with each other over items (target_compare.py)
SAFETY_TYPES = ("realtoxicity", "red_instruct")

BETTER, WORSE, SAME, HIGHER, LOWER, NO_CI = ("better", "worse", "no detectable difference", "higher", "lower",
                                              "too few seeds")
NO_VAR = "zero variance, no test"   # every seed difference equal: nothing to judge the difference against
NO_TEST = "no test"                 # two targets with neither per-item scores nor stderrs
TABLE_CORRECTION = "Benjamini–Hochberg"   # across one checkpoint's comparisons table
TAKEAWAY_CORRECTION = "Holm"               # within each takeaway's evidence (its benchmarks)


@dataclass(frozen=True)
class Comparison:
    section: str            # the question, e.g. "method: dpo vs sft (instruct bases)"
    a: str
    b: str
    benchmark: str
    metric: str
    higher_is_better: bool | None
    mean_a: float
    mean_b: float
    interval: stats.Interval
    contexts: int           # matched contexts (cells of the other axes) averaged over
    seeds: int              # seeds per context (the largest)
    verdict: str
    p_adjusted: float | None = None   # after `correction` within the comparison's family
    correction: str = "none"

    def as_dict(self) -> dict[str, Any]:
        iv = self.interval
        return {"question": self.section, "a": self.a, "b": self.b, "benchmark": self.benchmark,
                "metric": self.metric, "higher_is_better": self.higher_is_better, "mean_a": self.mean_a,
                "mean_b": self.mean_b, "difference": iv.estimate, "ci_low": iv.low, "ci_high": iv.high,
                "test": iv.test, "contexts": self.contexts, "seeds": self.seeds, "verdict": self.verdict,
                "df": iv.df, "p": iv.p, "p_adjusted": self.p_adjusted, "correction": self.correction,
                "alpha": stats.ALPHA}


@dataclass
class Takeaway:
    claim: str
    how: str                                   # what was compared
    verdict: str                               # supported | contradicted | mixed | not detectable | not testable
    evidence: list[Comparison] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "how": self.how, "verdict": self.verdict,
                "evidence": [c.as_dict() for c in self.evidence]}


@dataclass
class Findings:
    axes: list[str]
    comparisons: list[Comparison]
    takeaways: list[Takeaway] | None           # None: not the paper's study
    checkpoint: str = "final"
    earlier: list[Findings] = field(default_factory=list)   # the same questions at each evaluated step

    def as_dict(self) -> dict[str, Any]:
        return {"axes": self.axes, "checkpoint": self.checkpoint, "level": 1 - stats.ALPHA, "alpha": stats.ALPHA,
                "min_seeds": stats.MIN_SEEDS,
                "corrections": {"comparisons": TABLE_CORRECTION, "takeaways": TAKEAWAY_CORRECTION},
                "comparisons": [c.as_dict() for c in self.comparisons],
                "takeaways": None if self.takeaways is None else [t.as_dict() for t in self.takeaways],
                "checkpoints": {f.checkpoint: {k: v for k, v in f.as_dict().items() if k != "checkpoints"}
                                for f in self.earlier}}


# ---------------------------------------------------------------- the data
SeedMap = dict[Any, float]
Cell = tuple  # axis values in the order of Data.axes


@dataclass
class Data:
    axes: list[str]
    order: dict[str, list[Any]]                                 # each axis's values, manifest order
    cells: dict[str, dict[Cell, SeedMap]]                      # benchmark → cell → seed → value
    merges: dict[str, list[tuple[Cell, Any, float, list[str]]]]  # benchmark → (cell, seed, value, input jobs)
    by_target: dict[str, dict[str, float]]                     # benchmark → train job → value
    input_label: dict[str, str]                                # train job → "harmless-sft"
    kinds: dict[Any, str]                                      # model → pretrained | instruct
    types: dict[str, str]                                      # benchmark → type
    metric: dict[str, str]
    direction: dict[str, bool | None]
    targets: dict[str, dict[str, target_compare.Scored]] = field(default_factory=dict)  # benchmark → target → scores


def study_axes(study: Study, rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[Any]]]:
    """The swept axes (keys of the eval jobs' `axes`, in manifest order) that the tidy rows carry,
    each with its values in order of appearance (the spec's order)."""
    columns = set(rows[0]) if rows else set()
    order: dict[str, list[Any]] = {}
    for job in study.jobs.values():
        # untrained base models are not compared; a full-model target (kind base, named) is
        if job.stage == "eval" and ((job.config.get("target") or {}).get("kind") != "base"
                                    or job.axes.get("target") is not None):
            merged = job.axes.get("merge") is not None
            for k, v in job.axes.items():
                vals = order.setdefault(k, [])
                if merged and k != "merge":
                    continue   # a merge's method/preference are sets of its inputs', not values of the axis
                v = _pref(v) if isinstance(v, (list, tuple)) and k == "preference" else axis_value(v)
                if v is not None and v not in vals:
                    vals.append(v)
    known = [*AXIS_COLUMNS, *study.axes]   # only for the order shown: the tidy table's, then the manifest's
    # an axis no run has a value of (an evaluation-only study's dataset, peft, ...) is not one of its axes
    axes = sorted((k for k in order if k in columns and order[k]), key=lambda k: known.index(k) if k in known else len(known))
    return axes, {k: order[k] for k in axes}


def _directions(study: Study, primary: dict[str, str]) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {}
    for job in study.jobs.values():
        for res in (job.results.get(paths.EVAL), job.results.get(paths.JUDGE)):
            for benches in ((res or {}).get("checkpoints") or {}).values():
                for b, v in benches.items():
                    if b not in out and isinstance(v, dict) and v.get("metric") == primary.get(b) \
                            and isinstance(v.get("higher_is_better"), bool):
                        out[b] = v["higher_is_better"]
        if len(out) == len(primary):
            break
    return {b: out.get(b, METRIC_DIRECTION.get(m)) for b, m in primary.items()}


def checkpoints(rows: list[dict[str, Any]]) -> list[str]:
    """The evaluated intermediate checkpoints (steps, ascending) of trained runs, then "final"."""
    steps = {r["checkpoint"] for r in rows if r["stage"] != "train" and r.get("target_kind") != "base"
             and r["value"] is not None and r["checkpoint"] != "final"}
    return [*sorted(steps, key=lambda c: (not str(c).isdigit(), int(c) if str(c).isdigit() else 0, str(c))), "final"]


def build_data(study: Study, rows: list[dict[str, Any]], primary: dict[str, str], checkpoint: str = "final") -> Data:
    return build_all(study, rows, primary, [checkpoint])[checkpoint]


def build_all(study: Study, rows: list[dict[str, Any]], primary: dict[str, str], wanted: list[str]) -> dict[str, Data]:
    """Each wanted checkpoint's Data, read in one pass over the rows and the jobs."""
    axes, order = study_axes(study, rows)
    axes = [a for a in axes if a != "seed"]   # a cell's seeds are its replicates
    raw: dict[str, dict[str, dict[Cell, dict[Any, list[float]]]]] = {ck: {} for ck in wanted}
    merges: dict[str, dict[str, list]] = {ck: {} for ck in wanted}
    by_target: dict[str, dict[str, dict[str, float]]] = {ck: {} for ck in wanted}
    for r in rows:
        ck = r["checkpoint"]
        if r["stage"] == "train" or ck not in raw or r["value"] is None \
                or (r.get("target_kind") == "base" and r.get("target") is None) \
                or primary.get(r["benchmark"]) != r["metric"]:
            continue
        b = r["benchmark"]
        cell = tuple(r.get(a) for a in axes)
        target = study.jobs.get(r["target_job"] or "")
        if r.get("merge") is not None and target is not None and target.stage == "merge":
            merges[ck].setdefault(b, []).append((cell, r.get("seed"), r["value"], list(target.config.get("inputs") or [])))
            continue
        raw[ck].setdefault(b, {}).setdefault(cell, {}).setdefault(r.get("seed"), []).append(r["value"])
        if r["target_job"]:
            by_target[ck].setdefault(b, {})[r["target_job"]] = r["value"]
    labels, kinds, types = {}, {}, {}
    for job in study.jobs.values():
        model = job.config.get("model") or {}
        if job.axes.get("model") is not None and model.get("kind"):
            kinds.setdefault(job.axes["model"], model["kind"])
        if job.stage == "train":
            labels[job.id] = f"{_pref(job.axes.get('preference'))}-{job.axes.get('method')}"
        for name, bc in (job.config.get("benchmarks") or {}).items():
            if isinstance(bc, dict) and isinstance(bc.get("type"), str):
                types.setdefault(name, bc["type"])
    direction = _directions(study, primary)
    scored = target_compare.scored(study, rows, primary, types, wanted) if "target" in axes else {}
    out = {}
    for ck in wanted:
        # two runs that share every axis value and seed (an axis the tidy table lacks) are averaged
        cells = {b: {c: {s: sum(v) / len(v) for s, v in seeds.items()} for c, seeds in by_cell.items()}
                 for b, by_cell in raw[ck].items()}
        out[ck] = Data(axes, order, cells, merges[ck], by_target[ck], labels, kinds, types, dict(primary), direction,
                       scored.get(ck, {}))
    return out


def _pref(p: Any) -> str:
    return "+".join(sorted(map(str, p))) if isinstance(p, (list, tuple)) else str(p)


# ---------------------------------------------------------------- contrasts
Term = tuple[float, dict[str, Any]]   # weight, {axis: value or set of values}


def _matches(value: Any, want: Any) -> bool:
    return value in want if isinstance(want, (set, frozenset)) else value == want


def contexts(data: Data, bench: str, terms: list[Term], where: dict[str, Any] | None = None
             ) -> list[list[tuple[float, SeedMap]]]:
    """Group the benchmark's cells (filtered by `where`) by every axis the terms do not fix; keep
    the groups that have a cell for every term. (A term matching several cells of a group, which
    a set-valued term could do, takes their per-seed mean.)"""
    idx = {a: i for i, a in enumerate(data.axes)}
    if any(a not in idx for _, t in terms for a in t):
        return []
    filt = [(idx[a], v) for a, v in (where or {}).items() if a in idx]
    want = [[(idx[a], v) for a, v in t.items()] for _, t in terms]
    fixed = {idx[a] for _, t in terms for a in t}
    free = [i for i in range(len(data.axes)) if i not in fixed]
    groups: dict[tuple, list[list[SeedMap]]] = {}
    for cell, seeds in data.cells.get(bench, {}).items():
        if any(not _matches(cell[i], v) for i, v in filt):
            continue
        for k, conds in enumerate(want):
            if all(_matches(cell[i], v) for i, v in conds):
                groups.setdefault(tuple(cell[i] for i in free), [[] for _ in terms])[k].append(seeds)
    out = []
    for key in sorted(groups, key=str):
        parts = groups[key]
        if all(parts):
            out.append([(w, p[0] if len(p) == 1 else _seed_means(p)) for (w, _), p in zip(terms, parts, strict=True)])
    return out


def _seed_means(maps: list[SeedMap]) -> SeedMap:
    seeds = set.intersection(*(set(m) for m in maps))
    return {s: sum(m[s] for m in maps) / len(maps) for s in seeds}


def estimate(ctx: list[list[tuple[float, SeedMap]]]) -> tuple[stats.Interval, list]:
    """Paired t over the contexts whose cells share ≥ MIN_SEEDS seeds (only shared seeds used), else
    Welch's t over the contexts whose every cell has ≥ MIN_SEEDS seeds, whichever keeps more contexts
    (ties: paired); contexts with fewer seeds are left out. None usable: the estimate, no test."""
    k = stats.MIN_SEEDS
    common = [set.intersection(*(set(m) for _, m in cells)) for cells in ctx]
    pairable = [(cells, c) for cells, c in zip(ctx, common, strict=True) if len(c) >= k]
    unpaired = [cells for cells in ctx if all(len(m) >= k for _, m in cells)]
    if pairable and len(pairable) >= len(unpaired):
        diffs = [[sum(w * m[s] for w, m in cells) for s in sorted(c, key=str)] for cells, c in pairable]
        return stats.paired(diffs), [cells for cells, _ in pairable]
    if unpaired:
        return stats.welch([[(w, list(m.values())) for w, m in cells] for cells in unpaired]), unpaired
    est = sum(sum(w * sum(m.values()) / len(m) for w, m in cells) for cells in ctx) / len(ctx)
    return stats.Interval(est, None, None, f"fewer than {k} seeds per cell: no test"), ctx


def verdict(iv: stats.Interval, higher_is_better: bool | None, p_adjusted: float | None) -> str:
    """From the corrected p-value; the sign of the estimate gives the direction."""
    if iv.p is None or p_adjusted is None:
        if iv.low is None and "zero variance" in iv.test:
            return NO_VAR
        return NO_CI if "seeds" in iv.test else NO_TEST
    if p_adjusted >= stats.ALPHA:
        return SAME
    up = iv.estimate > 0
    if higher_is_better is None:
        return HIGHER if up else LOWER
    return BETTER if up == higher_is_better else WORSE


def corrected(comps: list[Comparison], method: str) -> list[Comparison]:
    """The family `comps` with adjusted p-values (method "Holm" or "Benjamini–Hochberg") and verdicts from them."""
    adjust = stats.holm if method == "Holm" else stats.bh
    ps = adjust([c.interval.p for c in comps])
    return [replace(c, p_adjusted=p, correction=method, verdict=verdict(c.interval, c.higher_is_better, p))
            for c, p in zip(comps, ps, strict=True)]


def compare(data: Data, section: str, a: str, b: str, terms: list[Term], where: dict[str, Any] | None = None,
            benches: Iterable[str] | None = None) -> list[Comparison]:
    """One uncorrected Comparison per benchmark; `a` is the positive terms, `b` the negative ones."""
    out = []
    for bench in benches if benches is not None else sorted(data.cells, key=_bench_key):
        ctx = contexts(data, bench, terms, where)
        out += _comparison(data, section, a, b, bench, ctx)
    return out


def _comparison(data: Data, section: str, a: str, b: str, bench: str, ctx) -> list[Comparison]:
    if not ctx:
        return []
    iv, ctx = estimate(ctx)
    nseeds = max(len(m) for cells in ctx for _, m in cells)
    side = [sum(w * sum(m.values()) / len(m) for w, m in cells if w > 0) / max(sum(w for w, _ in cells if w > 0), 1e-300)
            for cells in ctx]
    other = [sum(-w * sum(m.values()) / len(m) for w, m in cells if w < 0) / max(sum(-w for w, _ in cells if w < 0), 1e-300)
             for cells in ctx]
    hib = data.direction.get(bench)
    return [Comparison(section, a, b, bench, data.metric.get(bench, ""), hib, sum(side) / len(side),
                       sum(other) / len(other), iv, len(ctx), nseeds, verdict(iv, hib, iv.p))]


def _bench_key(b: str) -> tuple:
    from alignkit.collect.summary import BENCH_ORDER

    return (BENCH_ORDER.index(b) if b in BENCH_ORDER else len(BENCH_ORDER), b)


# ---------------------------------------------------------------- merges
# A merge is compared with EACH of its inputs on its own (paired by seed), never with the input
# that looks best on the same seeds: choosing the best of k noisy inputs on the data the test then
# uses biases every comparison against the merge (issue 25: 18% false verdicts, nearly all "worse").
MergeGroups = dict[Cell, tuple[SeedMap, dict[str, SeedMap]]]   # merge cell → (its seeds, input label → seeds)


def merge_groups(data: Data, bench: str, keep: Callable[[Cell], bool] = lambda c: True) -> MergeGroups:
    vals = data.by_target.get(bench, {})
    groups: MergeGroups = {}
    for cell, seed, value, inputs in data.merges.get(bench, []):
        if not keep(cell) or not inputs or any(i not in vals for i in inputs):
            continue
        merged, ins = groups.setdefault(cell, ({}, {}))
        merged[seed] = value
        for i in inputs:
            ins.setdefault(data.input_label.get(i, i), {})[seed] = vals[i]
    return groups


def _inputs_mean(ins: dict[str, SeedMap]) -> SeedMap:
    seeds = set.intersection(*(set(m) for m in ins.values()))
    return {s: sum(m[s] for m in ins.values()) / len(ins) for s in seeds}


def merge_comparisons(data: Data) -> list[Comparison]:
    """Per merge (name, merged methods) and benchmark: the merge vs the mean of its inputs and vs
    each input (by its label, e.g. harmless-dpo), matched on the merge's other axes."""
    out = []
    idx = {a: i for i, a in enumerate(data.axes)}
    if "merge" not in idx:
        return out
    kind = {c: (c[idx["merge"]], _label(c[idx["method"]]) if "method" in idx else "")
            for b in data.merges for c, *_ in data.merges[b]}
    for name, methods in sorted(set(kind.values()), key=str):
        def keep(c, which=(name, methods)):
            return kind[c] == which
        for bench in sorted(data.merges, key=_bench_key):
            section = f"merge {name} ({methods}) vs its inputs"
            groups = sorted(merge_groups(data, bench, keep).values(), key=lambda g: sorted(g[1]))
            out += _comparison(data, section, f"{name}", "mean of inputs", bench,
                               [[(1.0, m), (-1.0, _inputs_mean(ins))] for m, ins in groups])
            for label in sorted({lab for _, ins in groups for lab in ins}):
                out += _comparison(data, section, f"{name}", label, bench,
                                   [[(1.0, m), (-1.0, ins[label])] for m, ins in groups if label in ins])
    return out


def merges_beat_every_input(data: Data, bench: str) -> list[Comparison]:
    """The takeaway's evidence on one benchmark: every merge vs each of its inputs (pooled over the
    merge's contexts), combined as an intersection–union test. "better" needs every one of them
    better at α (p = the largest p, valid without correction); "worse" needs some input to beat the
    merge (p = the smallest Bonferroni-adjusted p of those, k tests). The row shows the binding test."""
    hib = data.direction.get(bench)
    idx = {a: i for i, a in enumerate(data.axes)}
    if "merge" not in idx:
        return []
    parts: list[Comparison] = []
    names = sorted({c[idx["merge"]] for c, *_ in data.merges.get(bench, [])}, key=str)
    for name in names:
        groups = merge_groups(data, bench, lambda c, n=name: c[idx["merge"]] == n)
        by_inputs: dict[tuple, list] = {}
        for g in groups.values():   # the same merge of the same input labels, over models/datasets/...
            by_inputs.setdefault(tuple(sorted(g[1])), []).append(g)
        for labels, gs in sorted(by_inputs.items()):
            for label in labels:
                parts += _comparison(data, "", str(name), label, bench, [[(1.0, m), (-1.0, ins[label])] for m, ins in gs])
    if not parts:
        return []
    good = [c for c in parts if c.interval.p is not None]
    section = "takeaway: each merge vs each of its inputs"
    mean_a = sum(c.mean_a for c in parts) / len(parts)
    mean_b = max((c.mean_b for c in parts), key=lambda v: v if hib is not False else -v)
    if len(good) < len(parts):
        worst = next(c for c in parts if c.interval.p is None)
        return [replace(worst, section=section, a="merges", b=f"each of {len(parts)} inputs")]
    up = [c for c in good if (c.interval.estimate > 0) == (hib is not False)]
    if len(up) == len(good):   # every merge above every input: the intersection–union p
        bind = max(good, key=lambda c: c.interval.p)
        p = bind.interval.p
        test = f"intersection–union over {len(good)} merge−input tests (largest p); {bind.interval.test}"
    else:                      # some input above its merge: is any significantly so? Bonferroni over k
        bind = min((c for c in good if c not in up), key=lambda c: c.interval.p)
        p = min(1.0, len(good) * bind.interval.p)
        test = f"some input above its merge: smallest p × {len(good)} (Bonferroni); {bind.interval.test}"
    iv = replace(bind.interval, test=test, p=p)
    return [Comparison(section, "merges", f"each of {len(good)} inputs", bench, data.metric.get(bench, ""), hib,
                       mean_a, mean_b, iv, bind.contexts, bind.seeds, verdict(iv, hib, p))]


def _label(method: Any) -> str:
    from alignkit.collect.summary import method_label, norm_method

    m = norm_method(method)
    return method_label(m) if m else ""


def target_comparisons(data: Data) -> list[Comparison]:
    """Every pair of evaluated targets per benchmark (later vs earlier in the spec): paired t over the
    items both scored, else z on their stderrs (target_compare.py)."""
    out = []
    for bench in sorted(data.targets, key=_bench_key):
        by_target = data.targets[bench]
        hib = data.direction.get(bench)
        for a, b in target_compare.pairs(by_target, [str(t) for t in data.order.get("target", [])]):
            iv, _ = target_compare.interval(by_target[a], by_target[b])
            out.append(Comparison(f"target: {a} vs {b}", a, b, bench, data.metric.get(bench, ""), hib,
                                  by_target[a].value, by_target[b].value, iv, 1, 1, verdict(iv, hib, iv.p)))
    return out


# ---------------------------------------------------------------- the study's comparisons
def axis_comparisons(data: Data) -> list[Comparison]:
    out: list[Comparison] = []
    for axis in data.axes:
        values = data.order.get(axis, [])
        if axis in NOT_COMPARED or len(values) < 2:
            continue
        for b, a in itertools.combinations(values, 2):   # later value vs earlier (spec order)
            terms = [(1.0, {axis: a}), (-1.0, {axis: b})]
            out += compare(data, f"{axis}: {a} vs {b}", str(a), str(b), terms)
            if axis == "method":   # the paper's question: per base-model kind (when the study has several)
                for kind in sorted(set(data.kinds.values())) if len(set(data.kinds.values())) > 1 else []:
                    models = {m for m, k in data.kinds.items() if k == kind}
                    out += compare(data, f"{axis}: {a} vs {b} ({kind} bases)", str(a), str(b), terms, {"model": models})
            if axis == "dataset" and "method" in data.axes:   # does the data help one method more?
                for m in data.order.get("method", []):
                    out += compare(data, f"{axis}: {a} vs {b} (method {m})", str(a), str(b), terms, {"method": m})
    return out


def at_checkpoint(study: Study, rows: list[dict[str, Any]], primary: dict[str, str], paper_study: bool,
                  checkpoint: str = "final") -> Findings:
    return _findings(build_data(study, rows, primary, checkpoint), paper_study, checkpoint)


def _findings(data: Data, paper_study: bool, checkpoint: str) -> Findings:
    """One checkpoint's findings: its comparisons table corrected as one family (Benjamini–Hochberg),
    each takeaway's evidence as its own family (Holm)."""
    comps = corrected(axis_comparisons(data) + merge_comparisons(data) + target_comparisons(data), TABLE_CORRECTION)
    return Findings(data.axes, comps, takeaways(data) if paper_study else None, checkpoint)


def compute(study: Study, rows: list[dict[str, Any]], primary: dict[str, str], paper_study: bool) -> Findings:
    """The final checkpoint's findings; `earlier` holds the same at each evaluated intermediate step."""
    wanted = checkpoints(rows)
    data = build_all(study, rows, primary, wanted)
    final = _findings(data["final"], paper_study, "final")
    final.earlier = [f for f in (_findings(data[ck], paper_study, ck) for ck in wanted[:-1]) if f.comparisons]
    return final


# ---------------------------------------------------------------- the paper's takeaways
def summarize(evidence: list[Comparison]) -> str:
    """From the corrected verdicts: supported: better on ≥1 benchmark and worse on none; contradicted:
    the reverse; mixed: both."""
    v = {c.verdict for c in evidence}
    if not evidence or v <= {NO_CI, NO_VAR, NO_TEST}:
        return "not testable"
    if BETTER in v and WORSE not in v:
        return "supported"
    if WORSE in v and BETTER not in v:
        return "contradicted"
    if BETTER in v and WORSE in v:
        return "mixed"
    return "not detectable"


def _kind_models(data: Data, kind: str) -> set[Any]:
    return {m for m, k in data.kinds.items() if k == kind}


def takeaways(data: Data) -> list[Takeaway]:
    out: list[Takeaway] = []

    def add(claim: str, how: str, ev: list[Comparison], flip: bool = False) -> None:
        ev = corrected(ev, TAKEAWAY_CORRECTION)
        out.append(Takeaway(claim, how, _flip(summarize(ev)) if flip else summarize(ev), ev))

    dpo_sft = [(1.0, {"method": "dpo"}), (-1.0, {"method": "sft"})]
    sft_dpo = [(1.0, {"method": "sft"}), (-1.0, {"method": "dpo"})]
    add("DPO is better than SFT for instruction-tuned bases",
        "DPO − SFT on instruct base models, matched on every other axis",
        compare(data, "takeaway: DPO vs SFT (instruct bases)", "dpo", "sft", dpo_sft,
                {"model": _kind_models(data, "instruct")}))
    add("SFT is better than DPO for pre-trained bases",
        "SFT − DPO on pre-trained base models, matched on every other axis",
        compare(data, "takeaway: SFT vs DPO (pre-trained bases)", "sft", "dpo", sft_dpo,
                {"model": _kind_models(data, "pretrained")}))
    bt, hh = "beavertails", "hh-rlhf"
    add("BeaverTails helps more for SFT than for DPO",
        "(BeaverTails − HH-RLHF | SFT) − (BeaverTails − HH-RLHF | DPO), matched on model, preference, PEFT",
        compare(data, "takeaway: BeaverTails gain, SFT minus DPO", "gain under SFT", "gain under DPO",
                [(1.0, {"dataset": bt, "method": "sft"}), (-1.0, {"dataset": hh, "method": "sft"}),
                 (-1.0, {"dataset": bt, "method": "dpo"}), (1.0, {"dataset": hh, "method": "dpo"})]))
    mixes = [p for p in data.order.get("preference", []) if "+" in str(p)]
    ev: list[Comparison] = []
    for mix in mixes:
        parts = str(mix).split("+")
        if all(p in data.order.get("preference", []) for p in parts):
            ev += compare(data, f"takeaway: {mix} vs its parts", str(mix), "mean of " + ", ".join(parts),
                          [(1.0, {"preference": mix})] + [(-1.0 / len(parts), {"preference": p}) for p in parts])
    add("Mixing preferences degrades performance",
        "the mixture − the mean of its single-preference runs, matched on every other axis", ev, flip=True)
    ev = []
    for bench in sorted(data.merges, key=_bench_key):
        ev += merges_beat_every_input(data, bench)
    add("Merging models aligned to different preferences beats the models merged",
        "each merge − each of its inputs (paired by seed, pooled over the merge's contexts): better only when "
        "it beats every input", ev)
    safety = [b for b in sorted(data.cells, key=_bench_key) if data.types.get(b) in SAFETY_TYPES]
    add("DPO aligns faithfully to the explicit preference (harmlessness)",
        "under DPO, harmless − helpful runs on the safety benchmarks (" + ", ".join(safety or ["none"]) + ")",
        compare(data, "takeaway: harmless vs helpful under DPO", "harmless", "helpful",
                [(1.0, {"preference": "harmless"}), (-1.0, {"preference": "helpful"})], {"method": "dpo"}, safety))
    return out


def _flip(v: str) -> str:
    """For a claim that something is *worse*: worse supports it."""
    return {"supported": "contradicted", "contradicted": "supported"}.get(v, v)
