"""A run's kept states inspected, without evaluating a path: the audit (duplicates, missing
steps, distances, other architectures, NaN: analysis/audit.py) and a replicate's trajectory
against the line from init to final (analysis/trajectory.py)."""

from __future__ import annotations

import os
from pathlib import Path

from linpath.analysis.audit import DISTANCE_TOLERANCE, audit_run
from linpath.analysis.grid_audit import grid_audit, unread_note
from linpath.analysis.trajectory import trajectory_rows, write_trajectory
from linpath.errors import LinpathError
from linpath.io.grid_record import GridRecord
from linpath.io.rundir import RunDir


def audit(
    run_dir: str | os.PathLike, tolerance: float | None = None, fetch: bool = False
) -> tuple[list, str]:
    """The audit's findings and its one-line verdict (clean, or how many findings, over how many
    finished replicates and kept states). A checkpoint grid's revisions are audited by their
    recorded hashes, and by their tensors where local (all of them with `fetch`)."""
    run = RunDir(run_dir)
    tolerance = DISTANCE_TOLERANCE if tolerance is None else tolerance
    if not tolerance >= 0:
        raise LinpathError(f"--tolerance must be a number >= 0, got {tolerance}")
    if run.is_grid:
        return _grid_audit(run, tolerance, fetch)
    findings = audit_run(run, tolerance=tolerance)
    states = sum(len(run.saved_steps(r)) for r in run.replicates())
    verdict = f"{len(findings)} finding{'s' * (len(findings) != 1)}" if findings else "clean"
    done = len(run.replicates())
    replicates = f"{done} finished replicate{'s' * (done != 1)}"
    return findings, f"audit: {verdict} ({replicates}, {states} kept states in {run.root})"


def _grid_audit(run: RunDir, tolerance: float, fetch: bool) -> tuple[list, str]:
    result = grid_audit(run, fetch=fetch, tolerance=tolerance)
    record = GridRecord.read(run.grid_record)
    states = sum(len(record.steps(r)) for r in record.replicates)
    n = len(result.findings)
    verdict = f"{n} finding{'s' * (n != 1)}" if n else "clean"
    note = f"; note: {unread}" if (unread := unread_note(result)) else ""
    replicates = f"{len(record.replicates)} replicate{'s' * (len(record.replicates) != 1)}"
    return result.findings, f"audit: {verdict} ({replicates}, {states} revisions of {run.root}){note}"


def trajectory(run_dir: str | os.PathLike, replicate: int, out=None) -> tuple[list[dict], list[Path]]:
    """Replicate r's kept states against its init -> final line, written to `out` (default the
    run's trajectory/r<r>/): the rows and the files."""
    run = RunDir(run_dir)
    rows = trajectory_rows(run, replicate)
    folder = out or run.trajectory_dir(replicate)
    return rows, write_trajectory(rows, folder, f"{run.root.name}, replicate {replicate}")
