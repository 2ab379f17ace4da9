"""From one sweep setting's item files to curves, and the metrics tables.

A sweep setting (sweep/<key>/) is read alone: points of different settings (another grid, a
subset, bf16, another split) are never combined into one curve. The tables are tidy:
per-replicate metrics in one, aggregates over replicates (mean, std, median, bootstrap
interval) in another, each row naming its setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from linpath.analysis.metrics import TABLE_METRICS, path_metrics
from linpath.errors import LinpathError
from linpath.io.grid_record import GridRecord
from linpath.io.rundir import RunDir
from linpath.io.tables import read_csv_rows
from linpath.sweep.paths_tables import valid_items

QUANTITIES = ("loss", "error")
# a causal language model's sweep (sweep/grid_sweep.py) adds bits per byte: its standard error
# is the loss's scaled by bits_per_byte / loss (exact where every unit has the same bytes per token)
LM_QUANTITIES = (*QUANTITIES, "bits_per_byte")
PAPER_SETTING = "test-interpolate-uniform100-fp32"  # the paper's: test split, full set, 100 points
VALUES = ("start_value", "end_value", "max_value")
REPLICATE_COLUMNS = ["setting", "replicate", "t", "quantity", *TABLE_METRICS, *VALUES]
SUMMARY_COLUMNS = [
    "setting",
    "t",
    "quantity",
    "metric",
    "replicates",
    "mean",
    "std",
    "median",
    "ci_low",
    "ci_high",
]


@dataclass
class Curves:
    """All curves of one sweep setting: (replicate, t) -> x, loss, error, loss_se, error_se."""

    setting: str
    split: str
    bn: str
    examples: int
    by_item: dict[tuple[int, int], dict[str, np.ndarray]] = field(default_factory=dict)
    quantities: tuple[str, ...] = QUANTITIES  # LM_QUANTITIES for a causal language model's sweep
    finished: list[int] = field(default_factory=list)  # the run's finished replicates (analysis/coverage.py)
    # (replicate, t) a checkpoint grid does not publish: missing from the grid (the audit says so), not from the sweep
    unpublished: set = field(default_factory=set)

    @property
    def is_lm(self) -> bool:
        """A causal language model's curves: token loss, next-token error, bits per byte."""
        return "bits_per_byte" in self.quantities

    @property
    def steps(self) -> list[int]:
        return sorted({t for _, t in self.by_item})

    @property
    def replicates(self) -> list[int]:
        return sorted({r for r, _ in self.by_item})

    def at(self, t: int) -> list[dict[str, np.ndarray]]:
        return [c for (r, tt), c in sorted(self.by_item.items()) if tt == t]

    def mean_std(self, t: int, quantity: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, mean and std over replicates at the x values all replicates share (std NaN for one)."""
        curves = self.at(t)
        common = set(curves[0]["x"].tolist())
        for c in curves[1:]:
            common &= set(c["x"].tolist())
        x = np.array(sorted(common))
        values = np.array([[dict(zip(c["x"].tolist(), c[quantity]))[v] for v in x] for c in curves])
        std = values.std(axis=0, ddof=1) if len(curves) > 1 else np.full(len(x), math.nan)
        return x, values.mean(axis=0), std


def settings_of(run: RunDir) -> list[str]:
    """The run's sweep settings that have finished items, the paper's first."""
    return sorted(run.swept_settings(), key=lambda k: (k != PAPER_SETTING, k))


def load_curves(run: RunDir, setting: str) -> Curves:
    """The curves of one sweep setting, read from its item files."""
    folder = run.setting_dir(setting)
    files = valid_items(run, setting)
    if not files:
        raise LinpathError(
            f"{run.root} has no finished paths for the sweep setting {setting!r}; sweep it first"
        )
    curves = None
    for path in files:
        rows = read_csv_rows(path)
        if not rows:
            continue
        first = rows[0]
        if curves is None:
            lm = bool(first.get("bits_per_byte"))
            curves = Curves(setting, first["split"], first["bn"], int(first["examples"]))
            curves.quantities = LM_QUANTITIES if lm else QUANTITIES
        curves.by_item[(int(first["replicate"]), int(first["t"]))] = _item_curve(rows, curves.quantities)
    if curves is None:
        raise LinpathError(f"the item files of {folder} are empty; sweep it again")
    curves.finished = run.replicates()
    curves.unpublished = _unpublished(run, curves.steps)
    return curves


def _unpublished(run: RunDir, steps: list[int]) -> set[tuple[int, int]]:
    """The (replicate, t) of `steps` whose revision a checkpoint grid lacks (none elsewhere)."""
    if not run.is_grid:
        return set()
    record = GridRecord.read(run.grid_record)
    return {(r, t) for r in record.replicates for t in steps if t not in record.steps(r)}


def _item_curve(rows: list[dict], quantities: tuple[str, ...]) -> dict[str, np.ndarray]:
    """One item's points sorted by x: each quantity and its standard error (see LM_QUANTITIES)."""
    pts = [d for _, d in sorted((float(d["x"]), d) for d in rows)]
    curve = {"x": np.array([float(d["x"]) for d in pts])}
    for q in quantities:
        curve[q] = np.array([float(d.get(q) or "nan") for d in pts])
        if q == "bits_per_byte":
            with np.errstate(divide="ignore", invalid="ignore"):
                curve[f"{q}_se"] = np.nan_to_num(curve["loss_se"] * curve[q] / curve["loss"])
        else:
            curve[f"{q}_se"] = np.array([float(d.get(f"{q}_se") or 0.0) for d in pts])
    return curve


def metric_rows(curves: Curves) -> list[dict]:
    """One row per (replicate, t, quantity): every path metric and the curve's values."""
    rows = []
    for (r, t), c in sorted(curves.by_item.items()):
        for q in curves.quantities:
            values = {"start_value": c[q][0], "end_value": c[q][-1], "max_value": float(np.max(c[q]))}
            rows.append(
                {
                    "setting": curves.setting,
                    "replicate": r,
                    "t": t,
                    "quantity": q,
                    **path_metrics(c["x"], c[q]),
                    **values,
                }
            )
    return rows
