"""Aggregates over replicates, with bootstrap intervals for the barrier heights.

The interval of a metric at t resamples both sources of uncertainty: the replicates (drawn with
replacement) and, where a curve was evaluated on a subset, the evaluation examples (each point
drawn from a normal with its standard error; points are treated as independent, which widens
the interval of a difference a little). With the whole test set and one replicate the interval
is the point itself: there is nothing to resample.
"""

from __future__ import annotations

import math

import numpy as np

from linpath.analysis.curves import VALUES, Curves
from linpath.analysis.metrics import BY_NAME, TABLE_METRICS

BOOTSTRAP_DRAWS = 2000
CONFIDENCE = 0.95


def bootstrap_interval(
    curves: Curves, t: int, quantity: str, metric: str, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> tuple[float, float]:
    """A percentile interval of the replicate-mean of `metric` at t (NaN where not defined)."""
    return bootstrap_intervals(curves, t, quantity, (metric,), draws, seed)[metric]


def bootstrap_intervals(
    curves: Curves, t: int, quantity: str, metrics, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """bootstrap_interval for several metrics from one set of resampled curves (the same draws
    as each would make alone, so each interval is the one it would get alone)."""
    out = {m: (math.nan, math.nan) for m in metrics}
    wanted = [m for m in metrics if m in BY_NAME and BY_NAME[m].interval]
    sample = _resampled(curves, t, quantity, draws, seed) if wanted else None
    if sample is None:
        return out
    x = curves.at(t)[0]["x"]
    for m in wanted:
        means = BY_NAME[m].of(x, sample).mean(axis=1)
        lo, hi = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
        out[m] = (float(lo), float(hi))
    return out


def _resampled(curves: Curves, t: int, quantity: str, draws: int, seed: int) -> np.ndarray | None:
    """(draws, R, n) curves: replicates drawn with replacement, each point moved by a normal draw
    times its standard error; None where the replicates' grids differ or a value is not finite.
    With no standard errors (the whole split) the normal draws would add zero, so they are skipped."""
    items = curves.at(t)
    x = items[0]["x"]
    if any(len(c["x"]) != len(x) or not np.array_equal(c["x"], x) for c in items):
        return None  # adaptive grids: replicates have different x
    f = np.stack([c[quantity] for c in items])  # (R, n)
    se = np.nan_to_num(np.stack([c[f"{quantity}_se"] for c in items]))
    if not np.all(np.isfinite(f)):
        return None
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(items), size=(draws, len(items)))
    if not se.any():
        return f[pick]
    return f[pick] + rng.standard_normal((draws, len(items), len(x))) * se[pick]


def summary_rows(curves: Curves, rows: list[dict]) -> list[dict]:
    """Per (t, quantity, metric): replicates, mean, std (NaN for one), median, bootstrap interval."""
    out = []
    metrics = (*TABLE_METRICS, *VALUES)
    for t in curves.steps:
        for q in curves.quantities:
            group = [row for row in rows if row["t"] == t and row["quantity"] == q]
            intervals = bootstrap_intervals(curves, t, q, metrics)
            for metric in metrics:
                v = np.array([row[metric] for row in group], float)
                lo, hi = intervals[metric]
                out.append(
                    {
                        "setting": curves.setting,
                        "t": t,
                        "quantity": q,
                        "metric": metric,
                        "replicates": len(v),
                        "mean": float(v.mean()),
                        "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                        "median": float(np.median(v)),
                        "ci_low": lo,
                        "ci_high": hi,
                    }
                )
    return out


def aggregate(summary: list[dict], t: int, quantity: str, metric: str, stat: str = "mean") -> float:
    """One aggregate (mean, std, median, ci_low, ci_high) from summary_rows()."""
    for row in summary:
        if row["t"] == t and row["quantity"] == quantity and row["metric"] == metric:
            return row[stat]
    return math.nan
