"""Tests of a contrast of cell means over seeds, and multiple-comparison corrections (stdlib only).

A *contrast* is Σ_k w_k · mean over seeds of cell k, averaged over C matched contexts (the values
of the axes not being compared). Two t tests, each giving a 95% interval, the degrees of freedom
and a two-sided p-value (docs/collect.md, Findings):

* paired: every cell of a context has the same seeds (the study's design pairs them), so each
  seed gives one difference d(c, s) = Σ_k w_k y_k(c, s). Per context, d's mean and sample variance
  s²_c over its n_c seeds; the estimate is the mean over contexts, its variance Σ_c s²_c/n_c / C²
  (contexts are fixed design points, seeds the replicates), and the interval is Student's t with
  Welch–Satterthwaite degrees of freedom. One context = the textbook paired t-test.
* welch: seeds do not pair; each cell contributes w_k² s²_k/n_k / C² to the variance and the
  degrees of freedom are Welch–Satterthwaite's over all cells. One context of two cells = Welch's
  unpaired t-test. (A percentile bootstrap over 2-5 seeds was anti-conservative: issue 25.)

Zero variance (every seed difference equal) is no evidence of anything: no interval, no p-value,
and the reason says so. `holm` and `bh` adjust a family's p-values (R's p.adjust "holm"/"BH").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

ALPHA = 0.05        # two-sided level of every test, after correction; intervals are 1 − ALPHA
MIN_SEEDS = 2       # seeds per cell below which no test (a t test needs a variance); calibrated in
                    # tests/collect/test_findings_calibration.py down to this number


# ---------------------------------------------------------------- Student's t quantile
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes §6.4)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
            if aa != 0 and abs(d * c - 1.0) < 1e-15:
                break
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_pdf(t: float, df: float) -> float:
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                    - (df + 1) / 2 * math.log1p(t * t / df))


def t_quantile(p: float, df: float) -> float:
    """Inverse of t_cdf: Newton steps from the Cornish–Fisher start, kept inside a bisection bracket."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile({p}, {df})")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    z = _normal_quantile(p)
    t = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    lo, hi = 0.0, max(t, 1.0)
    while t_cdf(hi, df) < p:
        hi *= 2.0
    t = min(max(t, lo), hi)
    for _ in range(100):
        err = t_cdf(t, df) - p
        if abs(err) < 1e-14:
            return t
        if err > 0:
            hi = t
        else:
            lo = t
        step = err / t_pdf(t, df)
        nxt = t - step
        if not lo < nxt < hi:   # Newton left the bracket: bisect instead
            nxt = 0.5 * (lo + hi)
        if abs(nxt - t) < 1e-10 * max(1.0, abs(t)):
            return nxt
        t = nxt
    return t


def _normal_quantile(p: float) -> float:
    """Acklam's rational approximation (relative error < 1.2e-9): only a starting point here."""
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
         -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
         -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
         4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)
    if p > 0.97575:
        q = math.sqrt(-2 * math.log(1 - p))
        return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


# ---------------------------------------------------------------- intervals
@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float | None        # None: no test (too few seeds, or zero variance: `test` says which)
    high: float | None
    test: str                # "paired t, df=…" | "Welch t, df=…" | why none
    df: float | None = None
    p: float | None = None   # two-sided, uncorrected

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's T with df degrees of freedom (I_{df/(df+t²)}(df/2, 1/2))."""
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _var(xs: Sequence[float]) -> float:
    m = _mean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def _t_interval(est: float, terms: list[tuple[float, int]], name: str, level: float, unit: str = "seed") -> Interval:
    """`terms`: (variance contribution, its replicate count n); Welch–Satterthwaite df = (Σv)² / Σ v²/(n−1)."""
    var = sum(v for v, _ in terms)
    if var <= 0.0 or not math.isfinite(var):
        return Interval(est, None, None, f"{name}: every {unit} difference is equal (zero variance), no test")
    df = var**2 / sum(v**2 / (n - 1) for v, n in terms if v > 0)
    se = math.sqrt(var)
    half = t_quantile(0.5 + level / 2, df) * se
    return Interval(est, est - half, est + half, f"{name}, df={df:.1f}", df, two_sided_p(est / se, df))


def paired(diffs: Sequence[Sequence[float]], level: float = 1 - ALPHA) -> Interval:
    """`diffs[c]` = the per-seed differences d(c, s) of context c."""
    ctx = [list(d) for d in diffs if d]
    est = _mean([_mean(d) for d in ctx])
    if any(len(d) < MIN_SEEDS for d in ctx):
        return Interval(est, None, None, f"fewer than {MIN_SEEDS} seeds in some context: no test")
    C = len(ctx)
    return _t_interval(est, [(_var(d) / len(d) / C**2, len(d)) for d in ctx], "paired t", level)


def paired_items(diffs: Sequence[float], level: float = 1 - ALPHA) -> Interval:
    """Paired t over the items two evaluated targets share (`diffs[i]` = A's score − B's on item i):
    the textbook one-sample t on the differences (alignkit/collect/target_compare.py)."""
    d = list(diffs)
    return _t_interval(_mean(d), [(_var(d) / len(d), len(d))], f"paired t over {len(d)} items", level, "item")


def z_difference(est: float, se: float, level: float = 1 - ALPHA) -> Interval:
    """Normal interval and two-sided p for a difference with standard error `se` (two targets'
    reported stderrs, combined as independent: conservative when their items are the same)."""
    name = "z on the two reported stderrs"
    if se <= 0.0 or not math.isfinite(se):
        return Interval(est, None, None, f"{name}: both stderrs are zero (zero variance), no test")
    half = normal_quantile(0.5 + level / 2) * se
    return Interval(est, est - half, est + half, name, None, math.erfc(abs(est / se) / math.sqrt(2.0)))


def normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF: Acklam's start refined by two Newton steps on erfc."""
    x = _normal_quantile(p)
    for _ in range(2):
        err = 0.5 * math.erfc(-x / math.sqrt(2.0)) - p
        x -= err * math.sqrt(2.0 * math.pi) * math.exp(0.5 * x * x)
    return x


def welch(contexts: Sequence[Sequence[tuple[float, Sequence[float]]]], level: float = 1 - ALPHA) -> Interval:
    """`contexts[c]` = [(weight, values over seeds) per cell]; cells independent, seeds unpaired."""
    ctx = [[(w, list(vals)) for w, vals in cells] for cells in contexts if cells]
    est = _mean([sum(w * _mean(v) for w, v in cells) for cells in ctx])
    if any(len(v) < MIN_SEEDS for cells in ctx for _, v in cells):
        return Interval(est, None, None, f"fewer than {MIN_SEEDS} seeds in some cell: no test")
    C = len(ctx)
    return _t_interval(est, [(w * w * _var(v) / len(v) / C**2, len(v)) for cells in ctx for w, v in cells],
                       "Welch t", level)


# ---------------------------------------------------------------- corrections
def holm(ps: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error ≤ α under any dependence); None stays None."""
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    out: list[float | None] = [None] * len(ps)
    m, run = len(idx), 0.0
    for rank, i in enumerate(idx):
        run = max(run, min(1.0, (m - rank) * ps[i]))
        out[i] = run
    return out


def bh(ps: Sequence[float | None]) -> list[float | None]:
    """Benjamini–Hochberg step-up adjusted p-values (false discovery rate ≤ α for independent or
    positively dependent tests; with no effect anywhere, the chance of any false verdict ≤ α)."""
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    out: list[float | None] = [None] * len(ps)
    m, run = len(idx), 1.0
    for rank in range(m - 1, -1, -1):
        i = idx[rank]
        run = min(run, m * ps[i] / (rank + 1))
        out[i] = run
    return out
