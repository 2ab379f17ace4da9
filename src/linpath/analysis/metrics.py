"""Path metrics: how far a curve f(x) (loss or error along a path) rises, and where.

For a curve sampled at x_0 < x_1 < ... < x_n (x_0 = 0 is the start, x_n = 1 the end):
  rise_over_start      max_i f(x_i) - f(x_0)                     (the paper's Figure 3)
  rise_over_endpoints  max_i f(x_i) - max(f(x_0), f(x_n))
  rise_over_chord      max_i [f(x_i) - ((1-x_i) f(x_0) + x_i f(x_n))]   (linear mode connectivity)
  monotonicity_gap     max_i [f(x_i) - min_{j <= i} f(x_j)]       (Lucas et al. 2021's Δ)
  convexity_gap        max_i [f(x_i) - h(x_i)], h the lower convex hull of the sampled points:
                       the largest height of any point above a chord between two other points
                       around it; 0 exactly when the sampled curve is convex.
  argmax_x             the x of the maximum (the first one on ties).
Chord terms use the grid's own end points, so they also hold for grids beyond [0, 1].
Curves with NaN or inf values give NaN (inf where the maximum is +inf) rather than an error.
"""

from __future__ import annotations

import math

import numpy as np

METRICS = (
    "rise_over_start",
    "rise_over_endpoints",
    "rise_over_chord",
    "monotonicity_gap",
    "convexity_gap",
    "argmax_x",
)


def rise_over_start(x, f) -> float:
    f = np.asarray(f, float)
    return float(np.max(f) - f[0])


def rise_over_endpoints(x, f) -> float:
    f = np.asarray(f, float)
    return float(np.max(f) - max(f[0], f[-1]))


def rise_over_chord(x, f) -> float:
    x, f = np.asarray(x, float), np.asarray(f, float)
    w = (x - x[0]) / (x[-1] - x[0])
    return float(np.max(f - ((1 - w) * f[0] + w * f[-1])))


def monotonicity_gap(x, f) -> float:
    f = np.asarray(f, float)
    return float(np.max(f - np.minimum.accumulate(f)))


def lower_hull(x, f) -> np.ndarray:
    """The lower convex hull of the points (x_i, f_i), evaluated at each x_i (monotone chain)."""
    x, f = np.asarray(x, float), np.asarray(f, float)
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b if it lies on or above the segment from a to i
            if (f[b] - f[a]) * (x[i] - x[a]) >= (f[i] - f[a]) * (x[b] - x[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return np.interp(x, x[hull], f[hull])


def convexity_gap(x, f) -> float:
    return float(np.max(np.asarray(f, float) - lower_hull(x, f)))


def argmax_x(x, f) -> float:
    return float(np.asarray(x, float)[int(np.argmax(np.asarray(f, float)))])


def path_metrics(x, f) -> dict[str, float]:
    """Every metric of one curve; NaN where the curve is not finite."""
    x, f = np.asarray(x, float), np.asarray(f, float)
    order = np.argsort(x, kind="stable")
    x, f = x[order], f[order]
    if not np.all(np.isfinite(f)):
        nan = math.nan
        peak = math.inf if np.any(np.isposinf(f)) else nan
        return {
            "rise_over_start": peak,
            "rise_over_endpoints": peak,
            "rise_over_chord": peak,
            "monotonicity_gap": peak,
            "convexity_gap": nan,
            "argmax_x": nan,
        }
    return {name: globals()[name](x, f) for name in METRICS}


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return math.nan, math.nan
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
