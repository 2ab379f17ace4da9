"""Decisions on a run's sweep settings beyond the report's (analysis/decisions.py): two settings
compared on the same states, and how many replicates and examples decide a claim, planned from
the run as a pilot (analysis/planner.py)."""

from __future__ import annotations

import os

from linpath.analysis.curves import load_curves, settings_of
from linpath.analysis.decisions import heights_from_curves, paired_rows, write_decisions
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.sweep.setting import parse_key


def _heights(run: RunDir, key: str, quantity: str, metric: str):
    if key not in settings_of(run):
        raise LinpathError(
            f"{run.root} has no finished sweep setting {key!r} (it has: {', '.join(settings_of(run))})"
        )
    return heights_from_curves(load_curves(run, key), quantity, metric)


def compare(
    run_dir: str | os.PathLike, a: str, b: str, quantity: str = "error", metric: str = "rise_over_endpoints"
):
    """Setting a minus setting b on the states both swept (e.g. bn interpolate against recompute,
    a parameter subset against the whole): per t the mean difference of the metric with its 95 %
    interval and p-value, written to results/compare/<a>--<b>.csv. Returns (rows, that file)."""
    run = RunDir(run_dir)
    rows = paired_rows(_heights(run, a, quantity, metric), _heights(run, b, quantity, metric))
    table = run.comparison_csv(a, b)
    write_decisions(table, rows)
    return rows, table


def pilot(run_dir: str | os.PathLike, key: str):
    """The run's setting `key` as a pilot for the planner (analysis/planner.py's plan_rows): its
    error heights, and its number of evaluation examples where it is a subset (-nN), else None."""
    fields = parse_key(key)
    examples = fields.eval_examples if fields and fields.eval_examples else None
    return _heights(RunDir(run_dir), key, "error", "rise_over_endpoints"), examples
