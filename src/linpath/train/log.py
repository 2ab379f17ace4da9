"""The per-epoch training log of a replicate (train_log.csv)."""

from __future__ import annotations

from linpath.io.rundir import RunDir
from linpath.io.tables import read_csv_rows, write_csv
from linpath.runtime import tensorboard

LOG_COLUMNS = ["iteration", "epoch", "lr", "train_loss", "test_loss", "test_accuracy", "seconds"]
TENSORBOARD_COLUMNS = ["train_loss", "test_loss", "test_accuracy", "lr"]  # against the iteration


def read_log(run: RunDir, r: int) -> list[dict]:
    path = run.train_log(r)
    return read_csv_rows(path) if path.exists() else []


def _write_log(run: RunDir, r: int, rows: list[list]) -> None:
    write_csv(run.train_log(r), LOG_COLUMNS, rows)


def append_log(run: RunDir, r: int, row: list) -> None:
    rows = [[d[c] for c in LOG_COLUMNS] for d in read_log(run, r)]
    _write_log(run, r, rows + [row])
    if folder := tensorboard.board(run.root, f"replicate-{r}"):  # only where the run asked for it
        values = dict(zip(LOG_COLUMNS, row))
        tensorboard.add_scalars(folder, values["iteration"], {c: values[c] for c in TENSORBOARD_COLUMNS})


def truncate_log(run: RunDir, r: int, step: int) -> None:
    """Drop log rows written after the state we resume from (they will be written again)."""
    rows = read_log(run, r)
    kept = [[d[c] for c in LOG_COLUMNS] for d in rows if int(d["iteration"]) <= step]
    if len(kept) != len(rows) or not run.train_log(r).exists():
        _write_log(run, r, kept)
