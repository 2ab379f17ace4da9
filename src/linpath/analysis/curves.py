"""From paths.csv to curves and the metrics table (per replicate, and mean/std over them)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from linpath.analysis.metrics import METRICS, mean_std, path_metrics
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.io.tables import write_csv

QUANTITIES = ("loss", "error")
METRIC_COLUMNS = [
    "stat",
    "replicate",
    "t",
    "split",
    "bn",
    "quantity",
    *METRICS,
    "start_value",
    "end_value",
    "max_value",
]


@dataclass
class Curves:
    """All curves of one sweep setting: (replicate, t) -> x, loss, error (sorted by x)."""

    split: str
    bn: str
    by_item: dict[tuple[int, int], dict[str, np.ndarray]]

    @property
    def steps(self) -> list[int]:
        return sorted({t for _, t in self.by_item})

    @property
    def replicates(self) -> list[int]:
        return sorted({r for r, _ in self.by_item})

    def at(self, t: int) -> list[dict[str, np.ndarray]]:
        return [c for (r, tt), c in sorted(self.by_item.items()) if tt == t]

    def mean_std(self, t: int, quantity: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, mean and std over replicates at the x values all replicates share."""
        curves = self.at(t)
        common = set(curves[0]["x"].tolist())
        for c in curves[1:]:
            common &= set(c["x"].tolist())
        x = np.array(sorted(common))
        values = np.array([[dict(zip(c["x"].tolist(), c[quantity]))[v] for v in x] for c in curves])
        std = values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(x))
        return x, values.mean(axis=0), std


def load_curves(
    run: RunDir, split: str = "test", bn: str = "interpolate", precision: str | None = None
) -> Curves:
    if not run.paths_csv.exists():
        raise LinpathError(f"{run.paths_csv} does not exist; run 'linpath sweep {run.root}' first")
    points: dict[tuple[int, int], dict[float, tuple[float, float, tuple[int, bool]]]] = defaultdict(dict)
    with open(run.paths_csv, newline="") as f:
        for number, d in enumerate(csv.DictReader(f), 2):
            if None in d.values() or None in d:  # fewer or more fields than the header
                raise LinpathError(f"{run.paths_csv} line {number} is cut short or not numbers")
            if d["split"] != split or d["bn"] != bn or (precision and d["precision"] != precision):
                continue
            try:
                key, x = (int(d["replicate"]), int(d["t"])), float(d["x"])
                # several sweeps may cover the same x: prefer more examples, then fp32 over bf16
                rank = (int(d["examples"]), d["precision"] == "fp32")
                value = (float(d["loss"]), float(d["error"]), rank)
            except (ValueError, TypeError, KeyError):
                raise LinpathError(f"{run.paths_csv} line {number} is cut short or not numbers") from None
            if x not in points[key] or points[key][x][2] < rank:
                points[key][x] = value
    if not points:
        raise LinpathError(
            f"{run.paths_csv} has no rows for split={split}, bn={bn}; sweep with those options first"
        )
    by_item = {}
    for key, pts in points.items():
        xs = sorted(pts)
        by_item[key] = {
            "x": np.array(xs),
            "loss": np.array([pts[x][0] for x in xs]),
            "error": np.array([pts[x][1] for x in xs]),
        }
    return Curves(split, bn, by_item)


def metric_rows(curves: Curves) -> list[dict]:
    """One row per (replicate, t, quantity), then mean and std rows per (t, quantity)."""
    rows = []
    for (r, t), c in sorted(curves.by_item.items()):
        for q in QUANTITIES:
            m = path_metrics(c["x"], c[q])
            rows.append(
                {
                    "stat": "replicate",
                    "replicate": r,
                    "t": t,
                    "split": curves.split,
                    "bn": curves.bn,
                    "quantity": q,
                    **m,
                    "start_value": c[q][0],
                    "end_value": c[q][-1],
                    "max_value": float(np.max(c[q])),
                }
            )
    aggregated = []
    for t in curves.steps:
        for q in QUANTITIES:
            group = [row for row in rows if row["t"] == t and row["quantity"] == q]
            means, stds = {}, {}
            for col in METRIC_COLUMNS[6:]:
                means[col], stds[col] = mean_std([row[col] for row in group])
            base = {"replicate": "", "t": t, "split": curves.split, "bn": curves.bn, "quantity": q}
            aggregated.append({"stat": "mean", **base, **means})
            aggregated.append({"stat": "std", **base, **stds})
    return rows + aggregated


def aggregate(rows: list[dict], t: int, quantity: str, metric: str) -> tuple[float, float]:
    """(mean, std) of one metric from metric_rows()."""
    get = {
        row["stat"]: row[metric]
        for row in rows
        if row["t"] == t and row["quantity"] == quantity and row["stat"] != "replicate"
    }
    return get.get("mean", math.nan), get.get("std", math.nan)


def write_metrics(run: RunDir, rows: list[dict]) -> None:
    write_csv(run.metrics_csv, METRIC_COLUMNS, rows)
