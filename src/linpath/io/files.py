"""Atomic file writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from linpath.errors import LinpathError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: Path, write: Callable[[object], None], mode: str = "wb") -> None:
    """Call write(file) on a temporary file beside `path`, fsync, then rename onto `path`."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should read like any file
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        reason = _write_failure(e, path.parent)  # before the temporary goes: it holds the space
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if reason is None:
            raise
        raise LinpathError(f"cannot write {path}: {reason}") from None


# torch.save's own writer (inline_container.cc) reports a failed write as a RuntimeError: "file
# write failed", or on a full disk "[enforce fail at inline_container.cc:672] . unexpected pos
# 704 vs 598" (torch 2.x), which names neither the disk nor the file.
TORCH_WRITER = ("write", "file", "inline_container", "unexpected pos")
FULL_BELOW = 1 << 20  # bytes left on the file system under which a failed write is a full disk


def _write_failure(e: BaseException, folder: Path) -> str | None:
    """The reason a write failed when it is the disk or the folder's fault (None for bugs)."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    if not isinstance(e, RuntimeError) or not any(w in str(e).lower() for w in TORCH_WRITER):
        return None
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    free = _free_bytes(folder)
    if free is not None and free < FULL_BELOW:
        return f"{os.strerror(errno.ENOSPC)} ({free} bytes free; torch.save: {first})"
    return f"torch.save failed: {first}"


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs on Windows
        return None
    return st.f_bavail * st.f_frsize


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files that killed writes left in `folder` (never read, only clutter).
    Call it while holding the lock of the stage that writes there."""
    removed = 0
    for p in Path(folder).rglob(".*.tmp") if Path(folder).is_dir() else []:
        with contextlib.suppress(OSError):
            p.unlink()
            removed += 1
    return removed


def file_sha256(path: Path) -> str:
    """A file's sha256 (hex), read in blocks of 1 MiB."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
