"""TensorBoard scalars for a run that asks for them (`--tensorboard` on train, run and report).

Asking creates <run>/tensorboard/. From then on each epoch-end row of replicate r's train log
also goes to tensorboard/replicate-<r>/ (train loss, test loss, test accuracy, learning rate
against the iteration), and each report writes the path metrics against t to
tensorboard/paths-<setting>/. The folder is the switch, so a resumed or continued run keeps
writing without being asked again; runs that never asked write nothing and need no package.
A resumed replicate re-logs the epochs after its resume state: its board is reopened with
TensorBoard's purge_step there, so each epoch shows once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from linpath.errors import LinpathError
from linpath.io.rundir import RunDir

_writers: dict[Path, object] = {}


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


def require() -> None:
    """A one-line error where the tensorboard package is missing."""
    if _summary_writer() is None:
        raise LinpathError("--tensorboard needs the tensorboard package: pip install 'linpath[tb]'")


def enable(root: Path) -> Path:
    """Switch a run's TensorBoard scalars on."""
    require()
    folder = RunDir(root).tensorboard_dir
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def board(root: Path, name: str) -> Path | None:
    """tensorboard/<name>/ of the run, or None where the run did not ask (or cannot write)."""
    folder = RunDir(root).tensorboard_dir
    return folder / name if folder.is_dir() and _summary_writer() is not None else None


def add_scalars(folder: Path, step: int, scalars: dict[str, float]) -> None:
    """Append one step's scalars to the board in `folder` (flushed at once: a killed run keeps them)."""
    writer = _writers.get(folder)
    if writer is None:
        writer = _writers[folder] = _summary_writer()(log_dir=str(folder))
    for tag, value in scalars.items():
        writer.add_scalar(tag, float(value), global_step=int(step))
    writer.flush()


def resume_board(folder: Path, step: int) -> None:
    """Hide the board's events after `step` (a resumed replicate writes them again): the writer
    is reopened with purge_step = step + 1, which TensorBoard's readers honour."""
    if not folder.is_dir():
        return
    _close(folder)
    _writers[folder] = _summary_writer()(log_dir=str(folder), purge_step=int(step) + 1)


def replace_board(folder: Path, series: list[tuple[str, int, float]]) -> None:
    """The board in `folder` rewritten to hold exactly `series` ((tag, step, value) each): a
    report run twice shows its numbers once."""
    _close(folder)
    shutil.rmtree(folder, ignore_errors=True)
    for tag, step, value in series:
        add_scalars(folder, step, {tag: value})
    _close(folder)


def _close(folder: Path) -> None:
    """Close and forget the open writer of the board in `folder`, if any."""
    writer = _writers.pop(folder, None)
    if writer is not None:
        writer.close()
