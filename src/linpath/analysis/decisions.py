"""Barrier decisions with their statistics: where barriers appear and vanish, "no barrier larger
than δ" as a tested claim, and two settings compared on the same states.

The unit of evidence is a barrier height h_r(t): one path metric (default: the error's
rise_over_endpoints, a rise above both ends, so the end's own test-error overfitting is not a
barrier) of replicate r's path from t, with its example standard error where the path was
evaluated on a subset (the points moved by normal draws times their standard errors, the metric
recomputed: the parametric bootstrap over examples of intervals.py).

Mean over replicates at t: m(t), with SE² = s²/R + ē², s² the replicates' variance and ē the
mean example SE (the replicates share their examples, so their example errors are taken as one);
its 95 % interval is m ± q·SE with q Student's t on Welch–Satterthwaite's degrees of freedom.
Not a percentile bootstrap over replicates: with the 3 replicates of a typical run its
intervals lie within the replicates' range and cover about 75 % (tests/test_decisions.py); the
t interval covers 95 % for normal heights at any R.

Onset and vanishing: t is mapped to s = log2(1 + t) and each replicate's heights interpolated
linearly in s between kept steps; the onset is the first upward crossing of the threshold c
(verdicts.BARRIER_THRESHOLD, 0.005) by m, the vanishing the last downward one. Their 95 %
intervals invert the t test of m(s) = c: the s left (right) of the peak where it is not
rejected; the true crossing is not rejected with probability 95 %, so the interval covers it.

Equivalence ("no barrier larger than δ"): two one-sided t tests of m(t) ≤ −δ and m(t) ≥ δ at
α = 5 %; the claim holds at t when both reject (p = the larger p-value), for the whole setting
when it holds at every t (an intersection-union test: no multiplicity correction is needed).
δ defaults to 0.005 of the error (0.5 percentage points), the verdicts' barrier threshold, so
that "a barrier" and "no barrier" are decided at one size; Frankle et al. 2020's stability
threshold (2 %) is DELTA_STABILITY for instability curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from linpath.analysis.curves import Curves
from linpath.analysis.metrics import BY_NAME, metric
from linpath.analysis.verdicts import BARRIER_THRESHOLD
from linpath.errors import LinpathError
from linpath.io.tables import write_csv

ALPHA = 0.05
CONFIDENCE = 0.95
DEFAULT_DELTA = BARRIER_THRESHOLD  # error units: 0.5 percentage points
DELTA_STABILITY = 0.02  # Frankle et al. 2020: a child pair is stable under a 2 % error barrier
DEFAULT_METRIC = "rise_over_endpoints"
EXAMPLE_DRAWS = 400  # parametric draws for a metric's example standard error
FINE = 64  # interpolated points per interval between kept steps, for the crossings
DECISION_COLUMNS = [
    "setting",
    "decision",
    "against",
    "quantity",
    "metric",
    "t",
    "replicates",
    "estimate",
    "se",
    "df",
    "ci_low",
    "ci_high",
    "threshold",
    "p_value",
    "verdict",
]


@dataclass
class Heights:
    """One metric per (replicate, t) of a sweep setting: values and example SEs, (R, T) each."""

    setting: str
    quantity: str
    metric: str
    steps: np.ndarray  # (T,)
    replicates: list[int]
    values: np.ndarray  # (R, T)
    se: np.ndarray  # (R, T), 0 on the whole split


def _metric_se(x, f, se, name: str, draws: int, rng) -> float:
    """The example SE of one curve's metric: its SD over normal draws of the points (0 without SEs)."""
    if not np.any(se):
        return 0.0
    sample = f + rng.standard_normal((draws, len(f))) * se
    return float(np.std(BY_NAME[name].of(x, sample), ddof=1))


def heights_from_curves(
    curves: Curves,
    quantity: str = "error",
    name: str = DEFAULT_METRIC,
    draws: int = EXAMPLE_DRAWS,
    seed: int = 0,
) -> Heights:
    """The heights of a setting's curves (analysis/curves.py), at the t every replicate has."""
    _check_metric(name)
    replicates = curves.replicates
    steps = [t for t in curves.steps if all((r, t) in curves.by_item for r in replicates)]
    rng = np.random.default_rng(seed)
    values = np.full((len(replicates), len(steps)), math.nan)
    se = np.zeros_like(values)
    for i, r in enumerate(replicates):
        for j, t in enumerate(steps):
            c = curves.by_item[(r, t)]
            values[i, j] = metric(name, c["x"], c[quantity])
            se[i, j] = _metric_se(c["x"], c[quantity], np.nan_to_num(c[f"{quantity}_se"]), name, draws, rng)
    return Heights(curves.setting, quantity, name, np.array(steps), replicates, values, se)


def heights_from_rows(rows: list[dict], quantity: str = "error", name: str = DEFAULT_METRIC) -> Heights:
    """The heights of a setting's metrics.csv rows (the whole split: example SEs 0)."""
    _check_metric(name)
    rows = [d for d in rows if d["quantity"] == quantity]
    if not rows:
        raise LinpathError(f"no {quantity} rows in the metrics table")
    replicates = sorted({int(d["replicate"]) for d in rows})
    by = {(int(d["replicate"]), int(d["t"])): float(d[name]) for d in rows}
    steps = sorted({t for _, t in by if all((r, t) in by for r in replicates)})
    values = np.array([[by[(r, t)] for t in steps] for r in replicates])
    return Heights(
        rows[0]["setting"], quantity, name, np.array(steps), replicates, values, np.zeros_like(values)
    )


def _check_metric(name: str) -> None:
    if name not in BY_NAME or not BY_NAME[name].height:
        heights = ", ".join(m.name for m in BY_NAME.values() if m.height)
        raise LinpathError(f"a decision needs a height metric ({heights}), got {name!r}")


def mean_se(values: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over the replicate axis (-2): mean, its SE and Welch–Satterthwaite degrees of freedom
    (inf where only the example part is known, NaN where neither is)."""
    r = values.shape[-2]
    mean = values.mean(-2)
    rep = values.var(-2, ddof=1) / r if r > 1 else np.zeros_like(mean)
    ex = se.mean(-2) ** 2
    total = rep + ex
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(rep > 0, total**2 / (rep**2 / max(r - 1, 1)), np.inf)
    df = np.where(total == 0, math.nan, df)  # no spread, nothing to estimate it from
    return mean, np.sqrt(total), df


def quantile(df: np.ndarray, p: float) -> np.ndarray:
    """Student's t quantile, the normal's at infinite degrees of freedom."""
    df = np.asarray(df, float)
    return np.where(np.isinf(df), stats.norm.ppf(p), stats.t.ppf(p, np.where(np.isinf(df), 1.0, df)))


def cdf(z: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Student's t distribution function, the normal's at infinite degrees of freedom."""
    df = np.asarray(df, float)
    return np.where(np.isinf(df), stats.norm.cdf(z), stats.t.cdf(z, np.where(np.isinf(df), 1.0, df)))


def interval(mean, se, df, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """mean ± q·se (the point itself where se is 0; NaN where df is)."""
    q = quantile(np.where(np.isnan(df), 1.0, df), (1 + confidence) / 2)
    half = np.where(se > 0, q * se, 0.0)
    half = np.where(np.isnan(df) & (se > 0), math.nan, half)
    return mean - half, mean + half


def tost_p(mean, se, df, delta: float) -> np.ndarray:
    """The p-value of two one-sided tests of |true mean| ≥ delta (the larger of the two)."""
    mean, se = np.asarray(mean, float), np.asarray(se, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = cdf((mean - delta) / se, df)  # H0: mean ≥ delta
        lower = 1 - cdf((mean + delta) / se, df)  # H0: mean ≤ -delta
    p = np.maximum(upper, lower)
    exact = np.where(np.abs(mean) < delta, 0.0, 1.0)  # no spread: the means are the truth
    return np.where(se > 0, p, exact)


def fine_grid(steps: np.ndarray, fine: int = FINE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s, left index, weight): s = log2(1 + t) at `fine` points per interval between steps."""
    s = np.log2(1.0 + np.asarray(steps, float))
    left = np.repeat(np.arange(len(s) - 1), fine)
    w = np.tile(np.arange(fine) / fine, len(s) - 1)
    left, w = np.append(left, len(s) - 2), np.append(w, 1.0)
    return s[left] + w * (s[left + 1] - s[left]), left, w


def crossings(steps, values, se, threshold: float, fine: int = FINE) -> dict[str, np.ndarray]:
    """Onset and vanishing of m(s) > threshold with their 95 % intervals, in t (module docstring).
    values, se: (..., R, T). Returns arrays of shape (...): barrier (any m > threshold), onset,
    onset_low, onset_high, vanish, vanish_low, vanish_high; NaN where not defined (no barrier;
    a barrier already at the first step has no onset, one still at the last no vanishing)."""
    s, left, w = fine_grid(steps, fine)
    V = values[..., left] * (1 - w) + values[..., left + 1] * w
    E = se[..., left] * (1 - w) + se[..., left + 1] * w  # a bound on the interpolated SE
    m, sd, df = mean_se(V, E)
    e = m - threshold
    accept = np.abs(e) <= np.where(sd > 0, quantile(np.where(np.isnan(df), 1.0, df), 0.975) * sd, 0.0)
    idx = np.arange(len(s))
    peak = np.argmax(m, -1)[..., None]
    above = e > 0
    barrier = above.any(-1)
    first = np.argmax(above, -1)
    last = len(s) - 1 - np.argmax(above[..., ::-1], -1)
    onset = _crossing(s, e, first - 1, first)
    onset = np.where(first == 0, math.nan, onset)
    vanish = _crossing(s, e, last, np.minimum(last + 1, len(s) - 1))
    vanish = np.where(last == len(s) - 1, math.nan, vanish)
    on_lo, on_hi = _hull(s, accept & (idx <= peak), onset)
    va_lo, va_hi = _hull(s, accept & (idx >= peak), vanish)
    out = {"barrier": barrier}
    for name, v in (("onset", onset), ("onset_low", on_lo), ("onset_high", on_hi)):
        out[name] = np.where(barrier, np.exp2(v) - 1, math.nan)
    for name, v in (("vanish", vanish), ("vanish_low", va_lo), ("vanish_high", va_hi)):
        out[name] = np.where(barrier, np.exp2(v) - 1, math.nan)
    return out


def _crossing(s, e, i, j) -> np.ndarray:
    """The s where e, linear between fine points i and j, is 0."""
    i = np.maximum(i, 0)
    ei, ej = np.take_along_axis(e, i[..., None], -1)[..., 0], np.take_along_axis(e, j[..., None], -1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(ej != ei, -ei / (ej - ei), 0.0)
    return s[i] + w * (s[j] - s[i])


def _hull(s, mask, estimate) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and largest s where `mask` holds, widened to include the estimate."""
    any_ = mask.any(-1)
    lo = np.where(any_, s[np.argmax(mask, -1)], math.nan)
    hi = np.where(any_, s[len(s) - 1 - np.argmax(mask[..., ::-1], -1)], math.nan)
    lo, hi = np.fmin(lo, estimate), np.fmax(hi, estimate)
    return lo, hi


def _row(h: Heights, decision: str, **fields) -> dict:
    row = dict.fromkeys(DECISION_COLUMNS, "")
    row.update(setting=h.setting, decision=decision, quantity=h.quantity, metric=h.metric)
    row.update(replicates=len(h.replicates))
    row.update({k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in fields.items()})
    return row


def height_rows(h: Heights, threshold: float = BARRIER_THRESHOLD, delta: float = DEFAULT_DELTA) -> list[dict]:
    """Per t: the mean height with its interval ("height": barrier / no barrier / undecided
    against the threshold) and the equivalence test of no barrier larger than delta."""
    mean, se, df = mean_se(h.values, h.se)
    lo, hi = interval(mean, se, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_above = np.where(se > 0, 1 - cdf((mean - threshold) / se, df), np.where(mean > threshold, 0.0, 1.0))
    p_equiv = tost_p(mean, se, df, delta)
    rows = []
    for j, t in enumerate(h.steps):
        common = dict(t=int(t), estimate=mean[j], se=se[j], df=df[j], ci_low=lo[j], ci_high=hi[j])
        word = "barrier" if lo[j] > threshold else "no barrier" if hi[j] <= threshold else "undecided"
        rows.append(_row(h, "height", **common, threshold=threshold, p_value=p_above[j], verdict=word))
        claim = f"no barrier larger than {delta:g}" if p_equiv[j] < ALPHA else "undecided"
        if p_equiv[j] < ALPHA and se[j] == 0:
            claim += " (no spread: every replicate the same, nothing to test)"
        rows.append(_row(h, "equivalence", **common, threshold=delta, p_value=p_equiv[j], verdict=claim))
    return rows


def setting_equivalence_row(h: Heights, delta: float = DEFAULT_DELTA) -> dict:
    """No barrier larger than delta at any t: the intersection-union test (p = the largest p)."""
    mean, se, df = mean_se(h.values, h.se)
    p = tost_p(mean, se, df, delta)
    worst = int(np.argmax(p))
    holds = bool(np.all(p < ALPHA))
    verdict = (
        f"no barrier larger than {delta:g} at any t"
        if holds
        else f"undecided (first at t = {int(h.steps[np.argmax(p >= ALPHA)])})"
    )
    return _row(h, "equivalence_all", t=int(h.steps[worst]), estimate=float(mean.max()), threshold=delta,
                p_value=float(p.max()), verdict=verdict)  # fmt: skip


def crossing_rows(h: Heights, threshold: float = BARRIER_THRESHOLD) -> list[dict]:
    """Where the mean height first rises above the threshold and last falls below it, in t."""
    c = crossings(h.steps, h.values, h.se, threshold)
    rows = []
    for name, first_word in (("onset", "appears"), ("vanish", "vanishes")):
        est, lo, hi = (float(c[k]) for k in (name, f"{name}_low", f"{name}_high"))
        if not c["barrier"]:
            verdict = f"no barrier above {threshold:g}: nothing {first_word}"
        elif math.isnan(est):
            edge = "first" if name == "onset" else "last"
            verdict = f"a barrier already at the {edge} kept t = {int(h.steps[0 if name == 'onset' else -1])}"
        else:
            verdict = f"{first_word} at t ≈ {est:.4g} (95 % interval {lo:.4g} to {hi:.4g})"
        rows.append(_row(h, name, estimate=est, ci_low=lo, ci_high=hi, threshold=threshold, verdict=verdict))
    return rows


def decision_rows(
    h: Heights, threshold: float = BARRIER_THRESHOLD, delta: float = DEFAULT_DELTA
) -> list[dict]:
    """A setting's decisions.csv: onset, vanishing, the setting-wide equivalence, then per t."""
    if h.values.size == 0:
        raise LinpathError(f"{h.setting}: no t that every replicate has")
    return [
        *crossing_rows(h, threshold),
        setting_equivalence_row(h, delta),
        *height_rows(h, threshold, delta),
    ]


def paired_rows(a: Heights, b: Heights) -> list[dict]:
    """Setting a minus setting b on the same states (replicates and t they share): the mean
    difference of the metric per t with its 95 % interval and the two-sided p-value of no
    difference. The example SEs add (an upper bound: the same examples make them correlate)."""
    if (a.quantity, a.metric) != (b.quantity, b.metric):
        raise LinpathError(f"compare one metric: {a.quantity} {a.metric} vs {b.quantity} {b.metric}")
    reps = [r for r in a.replicates if r in b.replicates]
    steps = [t for t in a.steps if t in set(b.steps.tolist())]
    if not reps or not steps:
        raise LinpathError(f"{a.setting} and {b.setting} share no replicate and t")
    ia, ib = [a.replicates.index(r) for r in reps], [b.replicates.index(r) for r in reps]
    ja, jb = [list(a.steps).index(t) for t in steps], [list(b.steps).index(t) for t in steps]
    d = a.values[np.ix_(ia, ja)] - b.values[np.ix_(ib, jb)]
    se_d = np.sqrt(a.se[np.ix_(ia, ja)] ** 2 + b.se[np.ix_(ib, jb)] ** 2)
    mean, se, df = mean_se(d, se_d)
    lo, hi = interval(mean, se, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * (1 - cdf(np.abs(mean) / se, df)), np.where(mean != 0, 0.0, 1.0))
    h = Heights(a.setting, a.quantity, a.metric, np.array(steps), reps, d, se_d)
    return [
        _row(
            h,
            "difference",
            against=b.setting,
            t=int(t),
            estimate=mean[j],
            se=se[j],
            df=df[j],
            ci_low=lo[j],
            ci_high=hi[j],
            threshold=0.0,
            p_value=p[j],
            verdict="differs" if p[j] < ALPHA else "no difference shown",
        )  # fmt: skip
        for j, t in enumerate(steps)
    ]


def write_decisions(path, rows: list[dict]) -> None:
    """decisions.csv (DECISION_COLUMNS), written atomically."""
    write_csv(path, DECISION_COLUMNS, rows)


def decision_lines(rows: list[dict]) -> list[str]:
    """The report's lines: onset, vanishing and the setting-wide claim of a decisions table."""
    lines = []
    for row in rows:
        if row["decision"] in ("onset", "vanish", "equivalence_all"):
            p = f" (p = {float(row['p_value']):.2g})" if row["p_value"] != "" else ""
            lines.append(f"- {row['quantity']} {row['metric']}, {row['decision']}: {row['verdict']}{p}.")
    return lines
