"""A run folder's tables as pandas DataFrames, for analysis (linpath.load)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from linpath.analysis.curves import REPLICATE_COLUMNS, SUMMARY_COLUMNS, settings_of
from linpath.analysis.decisions import DECISION_COLUMNS
from linpath.analysis.instability import CURVE_COLUMNS
from linpath.config.external import ExternalSpec
from linpath.config.spec import Spec, read_spec
from linpath.io.rundir import RunDir
from linpath.io.tables import csv_frame, csv_text, import_pandas
from linpath.sweep.items import PATH_COLUMNS, format_rows
from linpath.sweep.paths_tables import setting_columns, setting_rows
from linpath.train.log import LOG_COLUMNS


@dataclass(frozen=True)
class RunTables:
    """A run folder's tables as tidy pandas DataFrames (see load)."""

    root: Path
    spec: Spec | ExternalSpec
    paths: object  # every finished point, all settings: setting + paths.csv's columns
    metrics: object  # per replicate, t, quantity: results/<setting>/metrics.csv, all settings
    summary: object  # aggregates over replicates: results/<setting>/summary.csv, all settings
    train_log: object  # replicate + train_log.csv's columns, all replicates
    decisions: object = None  # barrier onset, vanishing and equivalence: results/<setting>/decisions.csv
    # linpath spawn's curve against T with 95 % intervals: spawn/instability_curve.csv
    instability: object = None


def _concat(frames: list, columns: list[str]):
    """One frame of many, or an empty one with `columns` (pandas cannot concatenate none)."""
    if not frames:
        return csv_frame(csv_text(columns, []))
    return import_pandas().concat(frames, ignore_index=True)


def _setting_tables(run: RunDir, table, columns: list[str]):
    """table(setting) (RunDir.metrics_csv, summary_csv) of every reported setting, concatenated,
    each with its setting column."""
    settings = [s for s in run.reported_settings() if table(s).is_file()]
    return _concat([csv_frame(table(s).read_text(), setting=s) for s in settings], columns)


def _setting_table(run: RunDir, setting: str) -> str:
    """A setting's rows as CSV text, with a language model's columns where its items hold them."""
    columns = setting_columns(run, setting)
    return format_rows(setting_rows(run, setting, columns), columns)


def load(run_dir: str | os.PathLike) -> RunTables:
    """A run folder's results as tidy DataFrames, for analysis in pandas (needs linpath[pandas]).

    paths is rebuilt from the finished item files of every sweep setting (as paths.csv is),
    so it is complete even while a sweep runs; metrics and summary are those the last
    `linpath report` wrote (decisions too); train_log holds every replicate's per-epoch log;
    instability the curve of the run's spawns (linpath spawn), empty without one."""
    run = RunDir(run_dir)
    spec = read_spec(run, external_ok=True)  # an external run's ExternalSpec (config/external.py)
    paths = _concat(
        [csv_frame(_setting_table(run, s), setting=s) for s in settings_of(run)],
        ["setting", *PATH_COLUMNS],
    )
    logs = run.train_logs()
    train_log = _concat([csv_frame(p.read_text(), replicate=r) for r, p in logs], ["replicate", *LOG_COLUMNS])
    return RunTables(
        run.root,
        spec,
        paths,
        _setting_tables(run, run.metrics_csv, REPLICATE_COLUMNS),
        _setting_tables(run, run.summary_csv, SUMMARY_COLUMNS),
        train_log,
        _setting_tables(run, run.decisions_csv, DECISION_COLUMNS),
        _concat(
            [csv_frame(run.instability_curve_csv.read_text())] if run.instability_curve_csv.is_file() else [],
            CURVE_COLUMNS,
        ),
    )
