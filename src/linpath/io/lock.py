"""An exclusive lock on a run folder, so two processes never write the same files.

POSIX flock is released by the kernel when its holder dies, so a crash never leaves a stale
lock behind; on Windows msvcrt's byte lock behaves the same way.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from linpath.errors import LinpathError

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(f) -> bool:
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _is_held(f) -> bool:
        return False  # no probe without taking the lock on Windows
else:
    import fcntl

    def _try_lock(f) -> bool:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _is_held(f) -> bool:
        """Whether another process holds the lock: a shared lock is refused then (and released at once
        otherwise, so a holder arriving meanwhile only waits: folder_lock retries)."""
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


RETRIES = 20  # a lock found taken is tried again for about half a second (a probe holds it for microseconds)


def holders(folder: Path, prefix: str) -> list[str]:
    """The pids of the processes holding a lock `folder/.<prefix>*.lock` now (nothing is created)."""
    found = []
    for path in sorted(Path(folder).glob(f".{prefix}*.lock")):
        try:
            with open(path) as f:
                if _is_held(f):
                    found.append(f.read().strip() or "unknown")
        except OSError:
            continue
    return found


def _try(f) -> bool:
    for attempt in range(RETRIES):
        if _try_lock(f):
            return True
        time.sleep(0.025 * (attempt < RETRIES - 1))
    return False


@contextlib.contextmanager
def folder_lock(folder: Path, name: str = "run") -> Iterator[None]:
    """Hold `folder/.<name>.lock`; a second holder gets a one-line refusal naming the first's pid."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / f".{name}.lock", "a+")
    except OSError as e:
        raise LinpathError(f"cannot use {folder}: {e.strerror or e}") from None
    try:
        if not _try(f):
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise LinpathError(
                f"{folder} is in use by another linpath process (pid {holder}); wait for it or stop it"
            )
        f.seek(0)
        f.truncate()
        with contextlib.suppress(OSError):  # the pid only names the holder; a full disk is no reason to fail
            f.write(str(os.getpid()))
            f.flush()
        yield
    finally:
        with contextlib.suppress(
            OSError
        ):  # close() flushes what a full disk refused: never mask the real error
            f.close()


@contextlib.contextmanager
def claimed(folder: Path, name: str) -> Iterator[bool]:
    """Try once to hold `folder/.<name>.lock` (an existing folder; nothing waits): yields whether
    it is held, for work that is only done when no other process is doing it."""
    try:
        f = open(Path(folder) / f".{name}.lock", "a+")
    except OSError:
        yield False
        return
    try:
        yield _try_lock(f)
    finally:
        f.close()
