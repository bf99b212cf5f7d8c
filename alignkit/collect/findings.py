"""Findings: the study's questions answered from its own data, with 95% intervals and verdicts.

Unit: the final checkpoint's primary metric of each benchmark, one value per run (seed). A
comparison is a contrast between cells (an axis value, or a merge and its inputs) matched on
every other axis, averaged over those matched contexts; stats.py gives its interval (paired t
over seeds when the cells share seeds, else a bootstrap over seeds). Axes come from the manifest
(each eval job's `axes`) and the tidy rows' columns, so a newly swept axis is compared without
code here. The paper's takeaways are judged only for a study with the paper's models and
datasets (summary.is_paper_study). Method and rules: docs/collect.md, "Findings".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from alignkit.collect import stats
from alignkit.collect.study import Study
from alignkit.collect.tidy import AXIS_COLUMNS, axis_value
from alignkit.contract import paths

# Direction of a metric when its result entry does not say (`higher_is_better`, as the eval and
# judge jobs and lm-eval write it). Unknown metrics get verdicts "higher"/"lower", not better/worse.
METRIC_DIRECTION = {"acc": True, "acc_norm": True, "exact_match": True, "f1": True, "win_rate": True,
                    "lc_win_rate": True, "safety": True, "toxicity_logit": True,
                    "asr": False, "toxicity": False, "perplexity": False, "word_perplexity": False, "loss": False}
NOT_COMPARED = ("seed", "merge")   # seed = the replicate; merges are compared with their inputs
SAFETY_TYPES = ("realtoxicity", "red_instruct")

BETTER, WORSE, SAME, HIGHER, LOWER, NO_CI = ("better", "worse", "no detectable difference", "higher", "lower",
                                              "too few seeds")


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

    def as_dict(self) -> dict[str, Any]:
        iv = self.interval
        return {"question": self.section, "a": self.a, "b": self.b, "benchmark": self.benchmark,
                "metric": self.metric, "higher_is_better": self.higher_is_better, "mean_a": self.mean_a,
                "mean_b": self.mean_b, "difference": iv.estimate, "ci_low": iv.low, "ci_high": iv.high,
                "test": iv.test, "contexts": self.contexts, "seeds": self.seeds, "verdict": self.verdict}


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

    def as_dict(self) -> dict[str, Any]:
        return {"axes": self.axes, "level": 0.95, "bootstrap": {"B": stats.BOOTSTRAP_B, "seed": stats.BOOTSTRAP_SEED},
                "comparisons": [c.as_dict() for c in self.comparisons],
                "takeaways": None if self.takeaways is None else [t.as_dict() for t in self.takeaways]}


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


def study_axes(study: Study, rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[Any]]]:
    """The swept axes (keys of the eval jobs' `axes`, in manifest order) that the tidy rows carry,
    each with its values in order of appearance (the spec's order)."""
    columns = set(rows[0]) if rows else set()
    order: dict[str, list[Any]] = {}
    for job in study.jobs.values():
        if job.stage == "eval" and (job.config.get("target") or {}).get("kind") != "base":
            merged = job.axes.get("merge") is not None
            for k, v in job.axes.items():
                vals = order.setdefault(k, [])
                if merged and k != "merge":
                    continue   # a merge's method/preference are sets of its inputs', not values of the axis
                v = _pref(v) if isinstance(v, (list, tuple)) and k == "preference" else axis_value(v)
                if v is not None and v not in vals:
                    vals.append(v)
    known = [*AXIS_COLUMNS, *study.axes]   # only for the order shown: the tidy table's, then the manifest's
    axes = sorted((k for k in order if k in columns), key=lambda k: known.index(k) if k in known else len(known))
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


def build_data(study: Study, rows: list[dict[str, Any]], primary: dict[str, str]) -> Data:
    axes, order = study_axes(study, rows)
    axes = [a for a in axes if a != "seed"]   # a cell's seeds are its replicates
    raw: dict[str, dict[Cell, dict[Any, list[float]]]] = {}
    merges: dict[str, list] = {}
    by_target: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["stage"] == "train" or r["checkpoint"] != "final" or r["value"] is None \
                or r.get("target_kind") == "base" or primary.get(r["benchmark"]) != r["metric"]:
            continue
        b = r["benchmark"]
        cell = tuple(r.get(a) for a in axes)
        target = study.jobs.get(r["target_job"] or "")
        if r.get("merge") is not None and target is not None and target.stage == "merge":
            merges.setdefault(b, []).append((cell, r.get("seed"), r["value"], list(target.config.get("inputs") or [])))
            continue
        raw.setdefault(b, {}).setdefault(cell, {}).setdefault(r.get("seed"), []).append(r["value"])
        if r["target_job"]:
            by_target.setdefault(b, {})[r["target_job"]] = r["value"]
    # two runs that share every axis value and seed (an axis the tidy table lacks) are averaged
    cells = {b: {c: {s: sum(v) / len(v) for s, v in seeds.items()} for c, seeds in by_cell.items()}
             for b, by_cell in raw.items()}
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
    return Data(axes, order, cells, merges, by_target, labels, kinds, types, dict(primary),
                _directions(study, primary))


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
    """Paired t over the contexts whose cells share ≥2 seeds (only shared seeds used), else a
    bootstrap over the contexts whose every cell has ≥2 seeds, whichever keeps more contexts (ties:
    paired); contexts with fewer seeds are left out. None usable: the estimate, no interval."""
    common = [set.intersection(*(set(m) for _, m in cells)) for cells in ctx]
    pairable = [(cells, c) for cells, c in zip(ctx, common, strict=True) if len(c) >= 2]
    boot = [cells for cells in ctx if all(len(m) >= 2 for _, m in cells)]
    if pairable and len(pairable) >= len(boot):
        diffs = [[sum(w * m[s] for w, m in cells) for s in sorted(c, key=str)] for cells, c in pairable]
        return stats.paired(diffs), [cells for cells, _ in pairable]
    if boot:
        return stats.bootstrap([[(w, list(m.values())) for w, m in cells] for cells in boot]), boot
    est = sum(sum(w * sum(m.values()) / len(m) for w, m in cells) for cells in ctx) / len(ctx)
    return stats.Interval(est, None, None, "fewer than 2 seeds per cell: no interval"), ctx


def verdict(iv: stats.Interval, higher_is_better: bool | None) -> str:
    if iv.low is None:
        return NO_CI
    if not iv.excludes_zero:
        return SAME
    up = iv.low > 0
    if higher_is_better is None:
        return HIGHER if up else LOWER
    return BETTER if up == higher_is_better else WORSE


def compare(data: Data, section: str, a: str, b: str, terms: list[Term], where: dict[str, Any] | None = None,
            benches: Iterable[str] | None = None) -> list[Comparison]:
    """One Comparison per benchmark; `a` is the positive terms, `b` the negative ones."""
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
                       sum(other) / len(other), iv, len(ctx), nseeds, verdict(iv, hib))]


def _bench_key(b: str) -> tuple:
    from alignkit.collect.summary import BENCH_ORDER

    return (BENCH_ORDER.index(b) if b in BENCH_ORDER else len(BENCH_ORDER), b)


# ---------------------------------------------------------------- merges
def merge_contexts(data: Data, bench: str, pick: Callable[[dict[str, SeedMap]], SeedMap],
                   keep: Callable[[Cell], bool] = lambda c: True) -> list[list[tuple[float, SeedMap]]]:
    """Each merge (its cell without seed) against `pick` of its inputs' per-seed values, paired by seed."""
    vals = data.by_target.get(bench, {})
    groups: dict[Cell, tuple[SeedMap, dict[str, SeedMap]]] = {}
    for cell, seed, value, inputs in data.merges.get(bench, []):
        if not keep(cell) or not inputs or any(i not in vals for i in inputs):
            continue
        merged, ins = groups.setdefault(cell, ({}, {}))
        merged[seed] = value
        for i in inputs:
            ins.setdefault(data.input_label.get(i, i), {})[seed] = vals[i]
    return [[(1.0, m), (-1.0, pick(ins))] for _, (m, ins) in sorted(groups.items(), key=lambda kv: str(kv[0]))]


def _inputs_mean(ins: dict[str, SeedMap]) -> SeedMap:
    seeds = set.intersection(*(set(m) for m in ins.values()))
    return {s: sum(m[s] for m in ins.values()) / len(ins) for s in seeds}


def _best_input(hib: bool | None) -> Callable[[dict[str, SeedMap]], SeedMap]:
    def pick(ins: dict[str, SeedMap]) -> SeedMap:
        score = {k: sum(m.values()) / len(m) for k, m in ins.items()}
        return ins[(max if hib is not False else min)(score, key=lambda k: (score[k], k))]
    return pick


def merge_comparisons(data: Data) -> list[Comparison]:
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
            hib = data.direction.get(bench)
            out += _comparison(data, section, f"{name}", "mean of inputs", bench, merge_contexts(data, bench, _inputs_mean, keep))
            out += _comparison(data, section, f"{name}", "best input", bench,
                               merge_contexts(data, bench, _best_input(hib), keep))
    return out


def _label(method: Any) -> str:
    from alignkit.collect.summary import method_label, norm_method

    m = norm_method(method)
    return method_label(m) if m else ""


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


def compute(study: Study, rows: list[dict[str, Any]], primary: dict[str, str], paper_study: bool) -> Findings:
    data = build_data(study, rows, primary)
    comps = axis_comparisons(data) + merge_comparisons(data)
    return Findings(data.axes, comps, takeaways(data) if paper_study else None)


# ---------------------------------------------------------------- the paper's takeaways
def summarize(evidence: list[Comparison]) -> str:
    """supported: better on ≥1 benchmark and worse on none; contradicted: the reverse; mixed: both."""
    v = {c.verdict for c in evidence}
    if not evidence or v <= {NO_CI}:
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

    def add(claim: str, how: str, ev: list[Comparison]) -> None:
        out.append(Takeaway(claim, how, summarize(ev), ev))

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
    out.append(Takeaway("Mixing preferences degrades performance",
                        "the mixture − the mean of its single-preference runs, matched on every other axis",
                        _flip(summarize(ev)), ev))
    ev = []
    for bench in sorted(data.merges, key=_bench_key):
        ev += _comparison(data, "takeaway: merges vs their best input", "merge", "best input", bench,
                          merge_contexts(data, bench, _best_input(data.direction.get(bench))))
    add("Merging models aligned to different preferences beats the models merged",
        "each merge − its best input (per context), pooled over all merges", ev)
    safety = [b for b in sorted(data.cells, key=_bench_key) if data.types.get(b) in SAFETY_TYPES]
    add("DPO aligns faithfully to the explicit preference (harmlessness)",
        "under DPO, harmless − helpful runs on the safety benchmarks (" + ", ".join(safety or ["none"]) + ")",
        compare(data, "takeaway: harmless vs helpful under DPO", "harmless", "helpful",
                [(1.0, {"preference": "harmless"}), (-1.0, {"preference": "helpful"})], {"method": "dpo"}, safety))
    return out


def _flip(v: str) -> str:
    """For a claim that something is *worse*: worse supports it."""
    return {"supported": "contradicted", "contradicted": "supported"}.get(v, v)
