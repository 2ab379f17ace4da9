"""paths.csv: every finished item file merged into one table, in a fixed order (so it is
identical however the work was split among processes)."""

from __future__ import annotations

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
    """Rebuild paths.csv from every finished item file; returns the number of rows."""
    rows = []
    seen = set()
    for path in sorted(run.sweep_dir.glob("*/r*-t*.csv")):
        for d in read_csv_rows(path):
            key = tuple(d[c] for c in PATH_COLUMNS[:7])
            if key not in seen:
                seen.add(key)
                rows.append([d.get(c) or "" for c in PATH_COLUMNS])  # files from before loss_se: blank
    rows.sort(key=lambda row: (row[3], row[4], row[6], int(row[5]), int(row[0]), int(row[1]), float(row[2])))
    atomic_write_text(run.paths_csv, format_rows(rows))
    return len(rows)
