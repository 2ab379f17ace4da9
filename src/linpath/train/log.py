"""The per-epoch training log of a replicate (train_log.csv).

Rows are appended, one line per epoch end (the file is not re-read and rewritten each epoch).
A row cut short by a kill is harmless: a resumed run first truncates the log to the rows up to
the step it resumes from (rows after it are written again), which drops it.
"""

from __future__ import annotations

from linpath.io.rundir import RunDir
from linpath.io.tables import csv_text, read_csv_rows, write_csv
from linpath.runtime import tensorboard

LOG_COLUMNS = ["iteration", "epoch", "lr", "train_loss", "test_loss", "test_accuracy", "seconds"]
TENSORBOARD_COLUMNS = ["train_loss", "test_loss", "test_accuracy", "lr"]  # against the iteration


def read_log(run: RunDir, r: int) -> list[dict]:
    path = run.train_log(r)
    return read_csv_rows(path) if path.exists() else []


def _write_log(run: RunDir, r: int, rows: list[list]) -> None:
    write_csv(run.train_log(r), LOG_COLUMNS, rows)


def append_log(run: RunDir, r: int, row: list) -> None:
    """Append one row (the log exists: truncate_log creates it before training starts), and
    its scalars to TensorBoard where the run asked for them."""
    path = run.train_log(r)
    if not path.exists():
        _write_log(run, r, [row])
    else:
        line = csv_text(LOG_COLUMNS, [row]).split("\n", 1)[1]  # the row without the header
        with open(path, "a", newline="") as f:
            f.write(line)
            f.flush()
    if folder := tensorboard.board(run.root, f"replicate-{r}"):  # only where the run asked for it
        values = dict(zip(LOG_COLUMNS, row))
        tensorboard.add_scalars(folder, values["iteration"], {c: values[c] for c in TENSORBOARD_COLUMNS})


def _complete(d: dict) -> bool:
    """A row with every column (a kill during an append can leave a partial last line)."""
    return all(d.get(c) not in (None, "") for c in LOG_COLUMNS) and d["iteration"].isdigit()


def truncate_log(run: RunDir, r: int, step: int) -> None:
    """Drop log rows written after the state we resume from (they will be written again), and
    any partial row; writes the header when there is no log yet."""
    rows = read_log(run, r)
    kept = [[d[c] for c in LOG_COLUMNS] for d in rows if _complete(d) and int(d["iteration"]) <= step]
    if len(kept) != len(rows) or not run.train_log(r).exists() or not _ends_with_newline(run, r):
        _write_log(run, r, kept)
    if folder := tensorboard.board(run.root, f"replicate-{r}"):
        tensorboard.resume_board(folder, step)


def _ends_with_newline(run: RunDir, r: int) -> bool:
    with open(run.train_log(r), "rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return False
        f.seek(-1, 2)
        return f.read(1) == b"\n"
