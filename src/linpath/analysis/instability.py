"""The instability curve of spawned children against the spawn step T, with 95 % intervals,
and where it falls below Frankle et al. 2020's 2 % (runs/spawn.py writes both).

Rows of instability.csv are grouped by setting, noise ("sgd", "perturb:EPS") and alignment.
The unit of the interval is the parent replicate (its pairs' mean error barrier), as the
replicates are independent and a parent's pairs are not (they share children); with a single
parent the pairs are the units, which understates the spread when there are more than two
children (the curve says which: `unit`). The mean, its SE and its t interval are
decisions.mean_se's; the point from which the curve stays below the threshold is the
vanishing of decisions.crossings (its interval inverts the t test of the mean at 2 %).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from linpath.analysis.decisions import DELTA_STABILITY, crossings, interval, mean_se

CURVE_COLUMNS = ["setting", "noise", "aligned", "t", "units", "unit", "mean", "se", "df", "ci_low", "ci_high"]
STABILITY_COLUMNS = [
    "setting",
    "noise",
    "aligned",
    "threshold",
    "stable_from",
    "ci_low",
    "ci_high",
    "verdict",
]


def _groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    out = defaultdict(list)
    for d in rows:
        out[(d["setting"], d.get("noise") or "sgd", int(d.get("aligned") or 0))].append(d)
    return dict(sorted(out.items()))


def unit_values(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, str]:
    """(steps, values (units, T), unit) of one group: per parent the mean of its pairs' error
    barriers, or per pair with one parent; only the T every unit has."""
    parents = sorted({int(d["replicate"]) for d in rows})
    unit = "replicate" if len(parents) > 1 else "pair"
    by = defaultdict(list)
    for d in rows:
        key = int(d["replicate"]) if unit == "replicate" else (int(d["child_a"]), int(d["child_b"]))
        by[(key, int(d["t"]))].append(float(d["error_barrier"]))
    units = sorted({k for k, _ in by})
    steps = sorted({t for _, t in by if all((u, t) in by for u in units)})
    values = np.array([[np.mean(by[(u, t)]) for t in steps] for u in units]).reshape(len(units), len(steps))
    return np.array(steps), values, unit


def instability_curve(rows: list[dict]) -> list[dict]:
    """CURVE_COLUMNS rows: per group and T, the mean error barrier with its 95 % interval."""
    out = []
    for (setting, noise, aligned), group in _groups(rows).items():
        steps, values, unit = unit_values(group)
        if not len(steps):
            continue
        mean, se, df = mean_se(values, np.zeros_like(values))
        lo, hi = interval(mean, se, df)
        for j, t in enumerate(steps):
            out.append({"setting": setting, "noise": noise, "aligned": aligned, "t": int(t), "units": len(values),
                        "unit": unit, "mean": float(mean[j]), "se": float(se[j]), "df": float(df[j]),
                        "ci_low": float(lo[j]), "ci_high": float(hi[j])})  # fmt: skip
    return out


def stability_rows(rows: list[dict], threshold: float = DELTA_STABILITY) -> list[dict]:
    """Per group: the T from which the mean error barrier stays below `threshold`, with its interval."""
    out = []
    for (setting, noise, aligned), group in _groups(rows).items():
        steps, values, _ = unit_values(group)
        base = {"setting": setting, "noise": noise, "aligned": aligned, "threshold": threshold}
        if len(steps) < 2:
            out.append({**base, "stable_from": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                        "verdict": "needs children spawned at two T or more"})  # fmt: skip
            continue
        c = crossings(steps, values, np.zeros_like(values), threshold)
        est, lo, hi = (float(c[k]) for k in ("vanish", "vanish_low", "vanish_high"))
        if not c["barrier"]:
            verdict, est = (
                f"stable (below {threshold:g}) from the first spawn T = {int(steps[0])}",
                float(steps[0]),
            )
        elif math.isnan(est):
            verdict = f"not stable by the last spawn T = {int(steps[-1])}"
        else:
            verdict = f"stable from T ≈ {est:.4g} (95 % interval {lo:.4g} to {hi:.4g})"
        out.append({**base, "stable_from": est, "ci_low": lo, "ci_high": hi, "verdict": verdict})
    return out
