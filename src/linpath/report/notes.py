"""Notes a report opens with when the folder is being written while it reads it: a sweep still
evaluating paths, a merge still copying a study's files. Their numbers are then those of what
was finished, and the coverage of each setting (analysis/coverage.py) says how far it got."""

from __future__ import annotations

from linpath.io.rundir import RunDir


def running_notes(run: RunDir) -> list[str]:
    """One note per stage found running on `run` (its lock held by a live process)."""
    notes = []
    if pids := run.running("sweep"):
        notes.append(
            f"a sweep of this run is still running (pid {', '.join(pids)}): the numbers below are those of "
            "the paths it had finished; report again when it is done"
        )
    if pids := run.running("merge"):
        notes.append(
            f"a merge into this study is still running (pid {', '.join(pids)}): the numbers below are "
            "those of the files it had copied; report again when it is done"
        )
    return notes
