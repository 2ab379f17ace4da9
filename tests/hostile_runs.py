"""Small run folders for the hostile tests: real LeNet states (untrained, so no training is
needed) that a real sweep evaluates on MNIST in a second, and helpers to damage item files."""

from __future__ import annotations

from pathlib import Path

import torch

from linpath.config.presets import preset
from linpath.config.spec import write_spec
from linpath.io.rundir import RunDir
from linpath.io.tables import write_csv
from linpath.models import build
from linpath.sweep.grids import Grid
from linpath.sweep.setting import SweepSetting
from linpath.train.log import LOG_COLUMNS

TOTAL = 40
SPEC = preset("mnist_lenet_300_100").with_overrides({"training_steps": f"{TOTAL}it"})
STEPS = (0, 4)  # the swept starting steps (from_steps); every kept t has a checkpoint anyway
SETTING = SweepSetting(grid=Grid(points=3), eval_examples=200)


def untrained_run(parent: Path, replicates=(0, 1), spec=SPEC) -> RunDir:
    """A finished run of `spec` whose states are LeNet initializations (one per (r, t)): every
    kept t has a checkpoint, each replicate a DONE mark and a one-row training log."""
    run = RunDir(Path(parent) / spec.run_name)
    write_spec(run, spec)
    for r in replicates:
        run.checkpoint_dir(r).mkdir(parents=True)
        for t in (0, 1, 2, 4, 8, 16, 32, TOTAL):
            torch.save(build("mnist_lenet_300_100", 10, seed=1000 * r + t).state_dict(), run.checkpoint(r, t))
        write_csv(run.train_log(r), LOG_COLUMNS, [[TOTAL, 0, 0.1, 2.3, 2.3, 0.1 + 0.01 * r, 1.0]])
        run.done_marker(r).write_text(f"{TOTAL}\n")
    return run


def rows_of(path: Path) -> list[list[str]]:
    return [line.split(",") for line in Path(path).read_text().splitlines()[1:]]


def set_cell(path: Path, line: int, column: int, value: str) -> None:
    """Write `value` into one cell of an item file (line 1 is the first row after the header)."""
    lines = Path(path).read_text().splitlines(keepends=True)
    cells = lines[line].rstrip("\n").split(",")
    cells[column] = value
    lines[line] = ",".join(cells) + "\n"
    Path(path).write_text("".join(lines))
