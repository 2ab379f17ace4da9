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
  barrier              max_i f(x_i) - (f(x_0) + f(x_n)) / 2     (Frankle et al. 2020's instability;
                       used by spawn, not tabulated)
Curves with NaN or inf values give NaN (inf where the maximum is +inf) rather than an error.

Each metric is one entry of METRICS, read by every consumer: the tables' columns (analysis/
curves.py), the bootstrap intervals (intervals.py, for entries with `interval`), the figures'
words, the CLI's --metric choices, spawn's barrier. A new metric is one entry here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _rise_over_start(x, f):
    return f.max(axis=-1) - f[..., 0]


def _rise_over_endpoints(x, f):
    return f.max(axis=-1) - np.maximum(f[..., 0], f[..., -1])


def _rise_over_chord(x, f):
    span = x[-1] - x[0]
    w = (x - x[0]) / span if span else np.zeros_like(x)  # one point: its own chord
    return (f - ((1 - w) * f[..., :1] + w * f[..., -1:])).max(axis=-1)


def _monotonicity_gap(x, f):
    return (f - np.minimum.accumulate(f, axis=-1)).max(axis=-1)


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


def _convexity_gap(x, f):
    return np.max(f - lower_hull(x, f))


def _argmax_x(x, f):
    return x[np.argmax(f, axis=-1)]


def _barrier(x, f):
    return f.max(axis=-1) - (f[..., 0] + f[..., -1]) / 2


@dataclass(frozen=True)
class Metric:
    """One path metric. `of` maps (x (n,), f (..., n)) to the metric of each curve along the
    last axis (a single curve is f of shape (n,); entries with `interval` must take stacked
    curves, for the bootstrap). `height`: a rise along the path (Figure 3 can show it), not a
    position. `on_nonfinite`: what a curve with NaN or inf gives ("peak": inf where the maximum
    is +inf, else NaN; "nan": NaN). `tabulated`: a column of metrics.csv and summary.csv."""

    name: str
    words: str
    of: Callable
    interval: bool = False
    height: bool = True
    on_nonfinite: str = "peak"
    tabulated: bool = True


METRICS: tuple[Metric, ...] = (
    Metric("rise_over_start", "rise above the start", _rise_over_start, interval=True),
    Metric("rise_over_endpoints", "rise above both ends", _rise_over_endpoints, interval=True),
    Metric("rise_over_chord", "rise above the chord", _rise_over_chord, interval=True),
    Metric("monotonicity_gap", "monotonicity gap", _monotonicity_gap),
    Metric("convexity_gap", "convexity gap", _convexity_gap, on_nonfinite="nan"),
    Metric("argmax_x", "position of the maximum", _argmax_x, height=False, on_nonfinite="nan"),
    Metric("barrier", "barrier above the ends' mean", _barrier, tabulated=False),
)
BY_NAME = {m.name: m for m in METRICS}
TABLE_METRICS = tuple(m.name for m in METRICS if m.tabulated)  # metrics.csv's and summary.csv's
HEIGHTS = tuple(m.name for m in METRICS if m.tabulated and m.height)  # what Figure 3 can show


def peak_place(f) -> str:
    """Where a curve's maximum lies (the first on ties): "start" (no rise), "inside" (strictly
    inside the path: a barrier where it is high enough) or "end" (the last point: the end above
    the start, such as test-loss overfitting, which is no barrier)."""
    f = np.asarray(f, float)
    i = int(np.argmax(f))
    return "start" if i == 0 else "end" if i == len(f) - 1 else "inside"


def metric(name: str, x, f) -> float:
    """One metric of one curve (sorted by x), NaN or inf where the curve is not finite."""
    m = BY_NAME[name]
    x, f = np.asarray(x, float), np.asarray(f, float)
    if not np.all(np.isfinite(f)):
        peak = m.on_nonfinite == "peak" and bool(np.any(np.isposinf(f)))
        return math.inf if peak else math.nan
    return float(m.of(x, f))


def path_metrics(x, f) -> dict[str, float]:
    """Every tabulated metric of one curve; NaN where the curve is not finite."""
    x, f = np.asarray(x, float), np.asarray(f, float)
    order = np.argsort(x, kind="stable")
    return {name: metric(name, x[order], f[order]) for name in TABLE_METRICS}
