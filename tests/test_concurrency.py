"""Commands on one folder at once: a report or a merge finds a sweep that is running (its lock
is held by a live process) without writing anything, and says so; probing a lock never makes
the process that takes it fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from linpath.io.lock import folder_lock
from linpath.io.rundir import RunDir
from linpath.report.notes import running_notes

from ._reliability import record

HOLD = """
import sys, time
from linpath.io.lock import folder_lock
with folder_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(60)
"""


class Holder:
    """A second process holding `folder/.<name>.lock` until stopped (a running sweep, a merge)."""

    def __init__(self, folder: Path, name: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder), name], stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.process.stdout.readline().strip() == "held"

    @property
    def pid(self) -> str:
        return str(self.process.pid)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_running_sweep_is_found_and_nothing_is_written(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    assert run.running("sweep") == [] and running_notes(run) == []
    with Holder(run.root, "sweep-rank0") as sweep:
        before = files_of(run.root)
        assert run.running("sweep") == [sweep.pid] and run.running("merge") == []
        notes = running_notes(run)
        assert notes == [
            f"a sweep of this run is still running (pid {sweep.pid}): the numbers below are those of the "
            "paths it had finished; report again when it is done"
        ]
        assert files_of(run.root) == before
    assert run.running("sweep") == []  # the kernel released it with the process
    record(
        "fault", "report while a sweep is running (issue 30.3)", f"found the sweep's lock: note '{notes[0]}'"
    )


BRIEF = """
import sys, time
import fcntl
f = open(sys.argv[1] + "/.sweep-rank0.lock", "a+")
fcntl.flock(f, fcntl.LOCK_SH)  # what holders() holds for an instant, here for 50 ms
print("probing", flush=True)
time.sleep(0.05)
"""


def test_a_lock_probed_at_that_instant_is_taken_after_a_short_wait(tmp_path):
    """holders() holds a shared lock for an instant: a sweep taking the lock then waits (up to
    half a second) instead of being refused."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    prober = subprocess.Popen(
        [sys.executable, "-c", BRIEF, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert prober.stdout.readline().strip() == "probing"
        with folder_lock(tmp_path, "sweep-rank0"):
            pass
    finally:
        prober.kill()
        prober.wait()


def test_a_lock_really_held_is_still_refused_in_one_line(tmp_path):
    from linpath.errors import LinpathError

    with Holder(tmp_path, "sweep-rank0") as other:
        with pytest.raises(LinpathError) as e:
            with folder_lock(tmp_path, "sweep-rank0"):
                pass
    assert (
        str(e.value)
        == f"{tmp_path} is in use by another linpath process (pid {other.pid}); wait for it or stop it"
    )
