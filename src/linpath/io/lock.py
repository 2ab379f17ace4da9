"""An exclusive lock on a run folder, so two processes never write the same files.

POSIX flock is released by the kernel when its holder dies, so a crash never leaves a stale
lock behind; on Windows msvcrt's byte lock behaves the same way.
"""

from __future__ import annotations

import contextlib
import os
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
else:
    import fcntl

    def _try_lock(f) -> bool:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
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
        if not _try_lock(f):
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
