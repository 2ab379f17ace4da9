"""A folder written whole or not at all (an import): built in a hidden scratch folder beside its
final place, `.<name>.<pid>.tmp/`, locked while it is written, then renamed into place.

A killed writer leaves its scratch folder behind; the next writer into the same parent removes
every scratch folder whose writer is gone (its pid is not alive and its lock is free), so none is
left for ever. A live writer's folder, here or on another machine that shares the disk (its lock
is held), is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from linpath.io.lock import claimed, folder_lock

LOCK = "scratch"


@contextlib.contextmanager
def scratch_folder(final: Path, kinds: tuple[str, ...] = ()) -> Iterator[Path]:
    """A fresh scratch folder for `final`, held locked while the block writes it and removed
    when the block ends (the block publishes it first, see publish). Stale scratch folders beside
    it whose names start with one of `kinds` (and final's own) are removed first."""
    final = Path(final)
    remove_stale_scratch(final.parent, (*kinds, final.name))
    scratch = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)  # this process's own, from an earlier failure
    try:
        with folder_lock(scratch, LOCK):
            yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def publish(scratch: Path, final: Path) -> bool:
    """Rename the written scratch folder onto `final`; False (nothing moved) where another
    process made `final` meanwhile."""
    (Path(scratch) / f".{LOCK}.lock").unlink(missing_ok=True)
    try:
        os.replace(scratch, final)
    except OSError:
        if Path(final).is_dir():
            return False
        raise
    return True


def remove_stale_scratch(parent: Path, kinds: tuple[str, ...]) -> int:
    """Remove the scratch folders in `parent` that killed writers left, of the folders whose
    names start with one of `kinds`; returns how many."""
    pattern = re.compile(r"^\.(?:" + "|".join(map(re.escape, kinds)) + r").*\.(\d+)\.tmp$")
    removed = 0
    for entry in Path(parent).iterdir() if kinds and Path(parent).is_dir() else []:
        m = pattern.match(entry.name)
        if m is None or not entry.is_dir() or _alive(int(m.group(1))):
            continue
        with claimed(entry, LOCK) as free:
            if free:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes one scratch folder at a time: an older one is stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid < 2**31  # another user's live process (an absurd pid: no process at all)
    return True
