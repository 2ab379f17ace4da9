"""Copies of the session's trained runs, so that no test writes into a shared fixture."""

from __future__ import annotations

import shutil
from pathlib import Path

from linpath.io.rundir import RunDir


def copy_trained(run: RunDir, folder: Path) -> RunDir:
    """The trained run (spec, checkpoints, logs) without any sweep results, under `folder`."""
    dest = Path(folder) / run.root.name
    ignore = shutil.ignore_patterns(".*lock", "sweep", "results", "paths.csv", "report.md")
    shutil.copytree(run.root, dest, ignore=ignore)
    return RunDir(dest)
