"""Checking a finished sweep item file before it is used (by the sweep, to decide what is done,
and by the merge, before its rows enter paths.csv).

An item file sweep/<key>/r<r>-t<t>.csv is valid when it parses as a table with the sweep's
columns, has at least one row, every row names its (r, t), its split, BN policy and precision
agree with the folder's key (which may end in a parameter subset, -params[...]-hold...), every number parses, and its x values are the grid's: for a fixed
grid exactly its positions (no row missing or extra); for an adaptive grid (whose further x
depend on the data) every x within the grid's range and its initial uniform points included.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from linpath.io.tables import csv_text
from linpath.sweep.grids import Grid

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


def format_rows(rows: list[list]) -> str:
    """An item file's (or a setting table's) text."""
    return csv_text(PATH_COLUMNS, rows)


_ITEM_NAME = re.compile(r"^r(\d+)-t(\d+)\.csv$")
_KEY = re.compile(
    r"^(?P<split>[a-z]+)-(?P<bn>[a-z]+)(?:\d+)?-(?P<grid>.+)-(?P<precision>fp32|bf16)(?:-n\d+)?"
    r"(?:-params\[[A-Za-z0-9._,=]+(?:-[0-9a-f]{8})?\]-hold(?:end|start))?$"
)
_FIXED_GRID = re.compile(
    r"^(?P<kind>uniform|dense-start|dense-end)(?P<n>\d+)(?:\[(?P<a>[^,\]]+),(?P<b>[^\]]+)\])?$"
)
_ADAPTIVE_GRID = re.compile(
    r"^adaptive(?P<n>\d+)-tol[^-\[]+-(?:loss|error|both)(?:\[(?P<a>[^,\]]+),(?P<b>[^\]]+)\])?$"
)


def grid_of_key(key: str) -> tuple[Grid | None, bool]:
    """The grid a sweep folder's key names, and whether its positions are exact (False: the key
    rounds the range with %g, so x are compared with a tolerance); (None, False) when the key
    does not determine the grid (values grids are named by a digest)."""
    m = _KEY.match(key)
    if m is None:
        return None, False
    text = m.group("grid")
    fixed, adaptive = _FIXED_GRID.match(text), _ADAPTIVE_GRID.match(text)
    found = fixed or adaptive
    if found is None:
        return None, False
    try:
        start = float(found.group("a")) if found.group("a") else 0.0
        stop = float(found.group("b")) if found.group("b") else 1.0
        kind = fixed.group("kind") if fixed else "adaptive"
        grid = Grid(kind=kind, points=int(found.group("n")), start=start, stop=stop)
    except Exception:  # a folder name that only looks like a key
        return None, False
    return grid, found.group("a") is None


def _close(a: float, b: float, exact: bool) -> bool:
    return a == b if exact else math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)


def item_problem(
    path: Path,
    grid: Grid | None = None,
    exact: bool = True,
    split: str | None = None,
    bn: str | None = None,
    precision: str | None = None,
) -> str | None:
    """Why the item file at `path` cannot be used (None when it can). Without a grid, the grid
    is read from the folder's key where that determines it."""
    path = Path(path)
    name = _ITEM_NAME.match(path.name)
    if name is None:
        return "its name is not r<replicate>-t<step>.csv"
    r, t = int(name.group(1)), int(name.group(2))
    if grid is None:
        grid, exact = grid_of_key(path.parent.name)
        m = _KEY.match(path.parent.name)
        if m is not None:
            split, bn, precision = m.group("split"), m.group("bn"), m.group("precision")
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
    if rows[0] != PATH_COLUMNS and rows[0] != PATH_COLUMNS[:9]:
        return "its header is not the sweep's columns"
    if len(rows) < 2:
        return "no rows"
    xs = []
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(rows[0]):
            return f"line {number} has {len(row)} fields, expected {len(rows[0])}"
        d = dict(zip(rows[0], row))
        try:
            if (int(d["replicate"]), int(d["t"])) != (r, t):
                return f"line {number} is for replicate {d['replicate']}, t={d['t']}, not r{r}, t={t}"
            int(d["examples"])
            values = [
                float(d[c])
                for c in ("x", "loss", "error") + tuple(c for c in ("loss_se", "error_se") if c in d)
            ]
        except ValueError:
            return f"line {number} holds a non-number"
        if not math.isfinite(values[0]):
            return f"line {number} has x = {d['x']}"
        for column, wanted in (("split", split), ("bn", bn), ("precision", precision)):
            if wanted is not None and d[column] != wanted:
                return f"line {number} has {column} {d[column]!r}, the folder's setting {wanted!r}"
        xs.append(values[0])
    if any(b <= a for a, b in zip(xs, xs[1:])):
        return "its x values are not strictly increasing (a row repeated or out of order)"
    if grid is None:
        return None
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
