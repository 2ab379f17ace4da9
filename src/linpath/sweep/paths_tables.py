"""The tables of a sweep: each setting's own paths.csv (results/<key>/paths.csv), and the
run's paths.csv, the union of all settings with a `setting` column for pandas users. Both are
rebuilt from the item files in a fixed order, so they are identical however the work was split."""

from __future__ import annotations

import sys
from pathlib import Path

from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tables import csv_text, read_csv_rows
from linpath.sweep.items import (
    LM_COLUMNS,
    PATH_COLUMNS,
    format_rows,
    item_problem,
    odd_examples,
    recorded_examples,
)

__all__ = ["PATH_COLUMNS", "format_rows", "rebuild_tables", "setting_columns", "setting_rows", "valid_items"]


def valid_items(run: RunDir, setting: str) -> list[Path]:
    """The setting's item files that pass sweep.items.item_problem and hold the setting's
    examples (sweep.items.odd_examples), in a merged study only those of replicates the merge
    finished copying (their DONE mark); the others are named in a warning."""
    good, problems = [], {}
    copied = set(run.replicates()) if run.is_merged else None
    for path in run.item_files(setting):
        if problem := item_problem(path):
            problems[path] = problem
        elif copied is not None and RunDir.item_of(path)[0] not in copied:
            problems[path] = (
                "its replicate has no DONE mark in this study (an interrupted merge: run it again)"
            )
        else:
            good.append(path)
    problems.update(odd_examples(good, recorded_examples(run, setting)))
    for path, problem in sorted(problems.items()):
        print(f"linpath: warning: left out of the tables: {path}: {problem}", file=sys.stderr)
    return [path for path in good if path not in problems]


def setting_rows(run: RunDir, setting: str, columns: list[str] = PATH_COLUMNS) -> list[list]:
    """Every finished point of one setting in `columns`, sorted by replicate, t and x."""
    rows = []
    for path in valid_items(run, setting):
        rows += [[d.get(c) or "" for c in columns] for d in read_csv_rows(path)]  # old files: blank se
    rows.sort(key=lambda row: (int(row[0]), int(row[1]), float(row[2])))
    return rows


def setting_columns(run: RunDir, setting: str) -> list[str]:
    """The setting's table columns: the sweep's, and a language model's quantities where its
    item files hold them (sweep/grid_sweep.py)."""
    for path in run.item_files(setting):
        try:
            with open(path, newline="") as f:
                header = f.readline().strip().split(",")
        except (OSError, UnicodeDecodeError):
            continue  # named by valid_items' warning
        if header[-len(LM_COLUMNS) :] == LM_COLUMNS:
            return PATH_COLUMNS + LM_COLUMNS
    return PATH_COLUMNS


def rebuild_tables(run: RunDir) -> int:
    """Rebuild each setting's table and the run's union table (with a language model's
    columns where a setting has them, blank for the others); returns the number of rows."""
    settings = sorted(p.name for p in run.sweep_dir.iterdir() if p.is_dir()) if run.sweep_dir.is_dir() else []
    union, extra = [], False
    for setting in settings:
        columns = setting_columns(run, setting)
        rows = setting_rows(run, setting, columns)
        if rows:
            atomic_write_text(run.setting_paths(setting), format_rows(rows, columns))
            union += [[setting, *row] for row in rows]
            extra = extra or len(columns) > len(PATH_COLUMNS)
    columns = ["setting", *PATH_COLUMNS] + (LM_COLUMNS if extra else [])
    union = [row + [""] * (len(columns) - len(row)) for row in union]
    atomic_write_text(run.paths_csv, csv_text(columns, union))
    return len(union)
