"""The tables of a sweep: each setting's own paths.csv (results/<key>/paths.csv), and the
run's paths.csv, the union of all settings with a `setting` column for pandas users. Both are
rebuilt from the item files in a fixed order, so they are identical however the work was split."""

from __future__ import annotations

import sys
from pathlib import Path

from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tables import csv_text, read_csv_rows
from linpath.sweep.items import PATH_COLUMNS, format_rows, item_problem, odd_examples, recorded_examples

__all__ = ["PATH_COLUMNS", "format_rows", "merge_paths", "setting_rows", "valid_items"]


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


def setting_rows(run: RunDir, setting: str) -> list[list]:
    """Every finished point of one setting, sorted by replicate, t and x."""
    rows = []
    for path in valid_items(run, setting):
        rows += [[d.get(c) or "" for c in PATH_COLUMNS] for d in read_csv_rows(path)]  # old files: blank se
    rows.sort(key=lambda row: (int(row[0]), int(row[1]), float(row[2])))
    return rows


def merge_paths(run: RunDir) -> int:
    """Rebuild each setting's table and the run's union table; returns the number of rows."""
    settings = sorted(p.name for p in run.sweep_dir.iterdir() if p.is_dir()) if run.sweep_dir.is_dir() else []
    union = []
    for setting in settings:
        rows = setting_rows(run, setting)
        if rows:
            atomic_write_text(run.results_dir(setting) / "paths.csv", format_rows(rows))
            union += [[setting, *row] for row in rows]
    atomic_write_text(run.paths_csv, csv_text(["setting", *PATH_COLUMNS], union))
    return len(union)
