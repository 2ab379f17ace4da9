"""The run folder: where every file lives, atomic writes, safe checkpoint loading, a lock.

    runs/<preset>-<hash>/
      spec.json                       the resolved spec (hash verified on every open)
      replicate-<r>/checkpoints/iter-<t>.pt   model state after t updates (kept steps)
      replicate-<r>/resume.pt         model + optimizer + step, for resuming training
      replicate-<r>/train_log.csv     per-epoch log
      sweep/<key>/r<r>-t<t>.csv       one finished path (replicate, t) of one sweep setting
      paths.csv                       every evaluated point (merged from sweep/)
      metrics.csv, figures/, report.md

Every file is written to a temporary name and renamed into place, so a crash leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .errors import LinpathError
from .spec import Spec


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: Path, write: Callable[[object], None], mode: str = "wb") -> None:
    """Call write(file) on a temporary file beside `path`, fsync, then rename onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should read like any file
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise LinpathError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def csv_text(columns: list[str], rows) -> str:
    """A CSV table with a header; rows are lists (in column order) or dicts. Floats are
    written with repr, which reads back to the same number."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = [row.get(c, "") for c in columns] if isinstance(row, dict) else row
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in cells])
    return out.getvalue()


def write_csv(path: Path, columns: list[str], rows) -> None:
    atomic_write_text(path, csv_text(columns, rows))


def save_tensors(path: Path, obj) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def load_tensors(path: Path) -> object:
    """torch.load with weights_only=True: tensors and plain containers, never code."""
    path = Path(path)
    if not path.is_file():
        raise LinpathError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):  # neither a zip nor a legacy pickle
        raise LinpathError(f"corrupt or truncated checkpoint {path}: not a file written by torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        # torch's message: a paragraph of advice, then the reason ("Unsupported global: ...")
        first = next((line for line in lines if "Unsupported" in line), lines[0] if lines else "unsafe content")
        raise LinpathError(f"refusing to load {path}: it is not plain tensor data ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LinpathError(f"corrupt or truncated checkpoint {path}: {first}") from None


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a model state dict saved by linpath or by a user (a dict of name -> tensor)."""
    obj = load_tensors(path)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a resume file or a {"model": state} wrapper
    if not isinstance(obj, dict) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise LinpathError(f"{path} is not a state dict (expected a mapping of parameter names to tensors)")
    return obj


class RunDir:
    """Paths inside one run folder; see the module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.json"

    def replicate_dir(self, r: int) -> Path:
        return self.root / f"replicate-{r}"

    def checkpoint_dir(self, r: int) -> Path:
        return self.replicate_dir(r) / "checkpoints"

    def checkpoint(self, r: int, t: int) -> Path:
        return self.checkpoint_dir(r) / f"iter-{t:07d}.pt"

    def resume_file(self, r: int) -> Path:
        return self.replicate_dir(r) / "resume.pt"

    def train_log(self, r: int) -> Path:
        return self.replicate_dir(r) / "train_log.csv"

    def done_marker(self, r: int) -> Path:
        return self.replicate_dir(r) / "DONE"

    @property
    def sweep_dir(self) -> Path:
        return self.root / "sweep"

    @property
    def paths_csv(self) -> Path:
        return self.root / "paths.csv"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    def saved_steps(self, r: int) -> list[int]:
        """Steps with a checkpoint on disk for replicate r, ascending."""
        folder = self.checkpoint_dir(r)
        if not folder.is_dir():
            return []
        steps = []
        for p in folder.glob("iter-*.pt"):
            with contextlib.suppress(ValueError):
                steps.append(int(p.stem.split("-", 1)[1]))
        return sorted(steps)

    def replicates(self) -> list[int]:
        """Replicates whose training finished."""
        out = []
        for p in self.root.glob("replicate-*"):
            with contextlib.suppress(ValueError):
                r = int(p.name.split("-", 1)[1])
                if self.done_marker(r).exists():
                    out.append(r)
        return sorted(out)

    def remove_stale_temporaries(self, folder: Path) -> int:
        """Delete temporary files that killed writes left in `folder` (never read, only
        clutter). Call it while holding the lock of the stage that writes there."""
        removed = 0
        for p in Path(folder).rglob(".*.tmp") if Path(folder).is_dir() else []:
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
        return removed

    # --- the spec -------------------------------------------------------------------
    def write_spec(self, spec: Spec) -> None:
        d = spec.to_json()
        d["versions"] = versions()
        atomic_write_text(self.spec_path, json.dumps(d, indent=2) + "\n")

    def read_spec(self) -> Spec:
        if not self.spec_path.is_file():
            raise LinpathError(f"{self.root} is not a linpath run folder (no spec.json)")
        try:
            d = json.loads(self.spec_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LinpathError(f"cannot read {self.spec_path}: {e}") from None
        spec = Spec.from_json(d, str(self.spec_path))
        suffix = self.root.name.rsplit("-", 1)[-1]
        if len(suffix) == 10 and all(c in "0123456789abcdef" for c in suffix) and suffix != spec.hash:
            raise LinpathError(
                f"{self.spec_path} does not match its folder: settings hash to {spec.hash}, folder says {suffix}"
            )
        return spec

    @contextlib.contextmanager
    def lock(self, name: str = "run") -> Iterator[None]:
        """Hold an exclusive lock on this folder; a second process gets a clear refusal.

        flock is released by the kernel when its holder dies, so a crash never leaves a
        stale lock behind.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f".{name}.lock"
        f = open(path, "a+")
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                raise LinpathError(
                    f"{self.root} is in use by another linpath process (pid {holder}); wait for it or stop it"
                ) from None
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            yield
        finally:
            f.close()


def versions() -> dict[str, str]:
    import platform

    import numpy

    from . import __version__

    return {"linpath": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}
