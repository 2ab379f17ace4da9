"""paths.csv: every finished item file merged into one table, in a fixed order (so it is
identical however the work was split among processes)."""

from __future__ import annotations

import sys

from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tables import csv_text, read_csv_rows

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
    return csv_text(PATH_COLUMNS, rows)


def merge_paths(run: RunDir) -> int:
    """Rebuild paths.csv from every finished item file; returns the number of rows. Item files
    that fail sweep.items.item_problem are left out, each with a warning."""
    from linpath.sweep.items import item_problem  # it imports PATH_COLUMNS from here

    rows = []
    seen = set()
    for path in sorted(run.sweep_dir.glob("*/r*-t*.csv")):
        if problem := item_problem(path):
            print(f"linpath: warning: left out of paths.csv: {path}: {problem}", file=sys.stderr)
            continue
        for d in read_csv_rows(path):
            key = tuple(d[c] for c in PATH_COLUMNS[:7])
            if key not in seen:
                seen.add(key)
                rows.append([d.get(c) or "" for c in PATH_COLUMNS])  # files from before loss_se: blank
    rows.sort(key=lambda row: (row[3], row[4], row[6], int(row[5]), int(row[0]), int(row[1]), float(row[2])))
    atomic_write_text(run.paths_csv, format_rows(rows))
    return len(rows)
