"""Checking a finished sweep item file before it is used (by the sweep, to decide what is done,
and by the merge, before its rows enter paths.csv).

An item file sweep/<key>/r<r>-t<t>.csv is valid when it parses as a table with the sweep's
columns, has at least one row, every row names its (r, t), its split, BN policy and precision
agree with the setting (given, or read from the folder's key: setting.parse_key), every number
parses, and its x values are the grid's: for a fixed grid exactly its positions (no row missing
or extra); for an adaptive grid (whose further x depend on the data) every x within the grid's
range and its initial uniform points included.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from linpath.io.rundir import RunDir
from linpath.io.tables import csv_text
from linpath.sweep.grids import Grid
from linpath.sweep.setting import KeyFields, SweepSetting, parse_key

PATH_COLUMNS = [
    "replicate",
    "t",
    "x",
    "split",
    "bn",
    "examples",
    "precision",
    "loss",
    "error",
    "loss_se",
    "error_se",
]
OLD_COLUMNS = PATH_COLUMNS[:9]  # item files written before standard errors were recorded
# a causal language model's further quantities (sweep/grid_sweep.py), after the sweep's columns
LM_COLUMNS = ["perplexity", "bits_per_byte", "tokens"]
LM_PATH_COLUMNS = PATH_COLUMNS + LM_COLUMNS
HEADERS = (PATH_COLUMNS, OLD_COLUMNS, LM_PATH_COLUMNS)


def format_rows(rows: list[list], columns: list[str] = PATH_COLUMNS) -> str:
    """An item file's (or a setting table's) text."""
    return csv_text(columns, rows)


def item_problem(path: Path, setting: SweepSetting | None = None) -> str | None:
    """Why the item file at `path` cannot be used (None when it can), checked against
    `setting`, else against what its folder's key says of the setting."""
    path = Path(path)
    item = RunDir.item_of(path)
    if item is None:
        return "its name is not r<replicate>-t<step>.csv"
    expected = _expected(setting, path.parent.name)
    rows = _read_rows(path)
    if isinstance(rows, str):
        return rows
    xs = []
    for number, d in enumerate(rows, 2):
        problem = _row_problem(d, number, item, expected)
        if problem:
            return problem
        xs.append(float(d["x"]))
    if any(b <= a for a, b in zip(xs, xs[1:])):
        return "its x values are not strictly increasing (a row repeated or out of order)"
    if expected is None or expected.grid is None:
        return None
    return _grid_problem(xs, expected.grid, expected.grid_exact)


def _expected(setting: SweepSetting | None, key: str) -> KeyFields | None:
    """What the rows must agree with: the given setting exactly, else the key's reading."""
    return parse_key(key) if setting is None else KeyFields.of(setting)


def _read_rows(path: Path) -> list[dict] | str:
    """The file's rows as dicts, or why it cannot be read as an item table."""
    try:
        with open(path, newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        return f"unreadable ({getattr(e, 'strerror', None) or e})"
    if not text.strip():
        return "empty"
    if not text.endswith("\n"):
        return "cut short (no newline at its end)"
    rows = list(csv.reader(text.splitlines()))
    if rows[0] not in HEADERS:
        return "its header is not the sweep's columns"
    if len(rows) < 2:
        return "no rows"
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(rows[0]):
            return f"line {number} has {len(row)} fields, expected {len(rows[0])}"
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def _row_problem(d: dict, number: int, item: tuple[int, int], expected: KeyFields | None) -> str | None:
    """Why one row cannot be used: another item's, a non-number, another setting's."""
    r, t = item
    try:
        if (int(d["replicate"]), int(d["t"])) != (r, t):
            return f"line {number} is for replicate {d['replicate']}, t={d['t']}, not r{r}, t={t}"
        int(d["examples"])
        values = [float(d[c]) for c in ("x", "loss", "error", "loss_se", "error_se", *LM_COLUMNS) if c in d]
    except ValueError:
        return f"line {number} holds a non-number"
    if not math.isfinite(values[0]):
        return f"line {number} has x = {d['x']}"
    for column in ("split", "bn", "precision"):
        wanted = getattr(expected, column) if expected is not None else None
        if wanted is not None and d[column] != wanted:
            return f"line {number} has {column} {d[column]!r}, the folder's setting {wanted!r}"
    return None


def _close(a: float, b: float, exact: bool) -> bool:
    return a == b if exact else math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)


def _grid_problem(xs: list[float], grid: Grid, exact: bool) -> str | None:
    """Why the rows' x are not the grid's (fixed grids: its positions exactly; adaptive: its range
    and its initial points)."""
    expected = grid.xs()
    if grid.kind == "adaptive":
        low, high = grid.start, grid.stop
        slack = 0.0 if exact else 1e-5 * (high - low)
        if not all(low - slack <= x <= high + slack for x in xs):
            return f"an x lies outside the grid's range [{low:g}, {high:g}]"
        missing = [x for x in expected if not any(_close(x, y, exact) for y in xs)]
        if missing:
            return f"{len(missing)} of the grid's initial points are missing (first: x = {missing[0]!r})"
        return None
    if len(xs) != len(expected):
        return f"{len(xs)} rows, the grid has {len(expected)} points"
    bad = next((i for i, (x, y) in enumerate(zip(xs, expected)) if not _close(x, y, exact)), None)
    if bad is not None:
        return f"x = {xs[bad]!r} at row {bad + 1} is not the grid's {expected[bad]!r}"
    return None
