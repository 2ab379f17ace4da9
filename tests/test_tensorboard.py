"""--tensorboard: the scalars read back with TensorBoard's EventAccumulator against train_log.csv
and summary.csv (read with the csv module); nothing written unless asked; one line without the
package."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from linpath.cli import main
from linpath.io.rundir import RunDir
from linpath.runtime import tensorboard as tb
from linpath.train.log import LOG_COLUMNS, append_log, truncate_log
from tests.synthetic_run import STEPS, make_run

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard is not installed"
)


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of one board, as (step, value) pairs."""
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


ROWS = [[100, 1.0, 0.1, 0.9, 0.5, 0.85, 3.2], [200, 2.0, 0.05, 0.4, 0.3, 0.91, 6.1]]


def test_the_train_log_rows_reach_tensorboard_once_asked(tmp_path):
    run = RunDir(tmp_path / "run")
    append_log(run, 0, ROWS[0])
    assert not (run.root / "tensorboard").exists()  # off by default
    tb.enable(run.root)
    append_log(run, 0, ROWS[1])
    append_log(run, 1, ROWS[0])
    board = scalars(run.root / "tensorboard" / "replicate-0")
    logged = read_rows(run.train_log(0))[1:]  # the rows after the board was switched on
    assert set(board) == {"train_loss", "test_loss", "test_accuracy", "lr"}
    for column, series in board.items():
        assert series == [(int(d["iteration"]), pytest.approx(float(d[column]))) for d in logged]
    assert scalars(run.root / "tensorboard" / "replicate-1")["test_accuracy"] == [(100, pytest.approx(0.85))]
    assert LOG_COLUMNS.index("test_accuracy") == 5  # ROWS above are in the log's column order


def test_a_resumed_replicate_shows_each_epoch_once(tmp_path):
    """Killed after logging epoch 2 but resuming from epoch 1's state: epoch 2 is logged again,
    with other values; the board shows epoch 2 once, with the new values, as the log does."""
    run = RunDir(tmp_path / "run")
    tb.enable(run.root)
    truncate_log(run, 0, 0)
    append_log(run, 0, ROWS[0]), append_log(run, 0, ROWS[1])
    truncate_log(run, 0, 100)  # the resume: state at iteration 100
    again = [200, 2.0, 0.05, 0.7, 0.6, 0.77, 9.9]
    append_log(run, 0, again)
    board = scalars(run.root / "tensorboard" / "replicate-0")
    assert board["test_accuracy"] == [(100, pytest.approx(0.85)), (200, pytest.approx(0.77))]
    assert [d["test_accuracy"] for d in read_rows(run.train_log(0))] == ["0.85", "0.77"]


def test_without_the_package_asking_is_one_line(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    assert main(["report", str(run.root), "--tensorboard"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["linpath: error: --tensorboard needs the tensorboard package: pip install 'linpath[tb]'"]
    assert not (run.root / "tensorboard").exists() and not run.report.exists()


@pytest.mark.slow
def test_report_writes_the_path_metrics_once(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["report", str(run.root), "--setting", "test-interpolate-uniform21-fp32"]) == 0
    assert not (run.root / "tensorboard").exists()  # off by default
    for _ in range(2):  # twice: the board holds each number once
        assert main(["report", str(run.root), "--tensorboard"]) == 0
    for key in ("test-interpolate-uniform21-fp32", "test-interpolate-uniform11-fp32-n500"):
        board = scalars(run.root / "tensorboard" / f"paths-{key}")
        summary = read_rows(run.results_dir(key) / "summary.csv")
        assert len(board) == len(summary) // len(STEPS)  # one series per (quantity, metric)
        for row in summary:
            series = dict(board[f"{row['quantity']}/{row['metric']}"])
            assert len(board[f"{row['quantity']}/{row['metric']}"]) == len(STEPS)
            assert series[int(row["t"])] == pytest.approx(float(row["mean"]), rel=1e-6, abs=1e-9)


@pytest.mark.slow
def test_training_with_tensorboard_writes_each_epoch(tmp_path, data_root):
    """One replicate, two short epochs of LeNet (batches of 6,000: 10 iterations each)."""
    argv = [
        "train",
        "mnist_lenet_300_100",
        "--training-steps",
        "2ep",
        "--batch-size",
        "6000",
        "--replicates",
        "1",
    ]
    argv += ["--data-root", str(data_root), "--out", str(tmp_path), "--quiet", "--tensorboard"]
    assert main(argv) == 0
    (root,) = tmp_path.iterdir()
    board = scalars(root / "tensorboard" / "replicate-0")
    log = read_rows(root / "replicate-0" / "train_log.csv")
    assert [step for step, _ in board["test_accuracy"]] == [10, 20] == [int(d["iteration"]) for d in log]
    assert [v for _, v in board["train_loss"]] == pytest.approx([float(d["train_loss"]) for d in log])
