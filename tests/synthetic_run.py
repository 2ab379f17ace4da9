"""A run folder with made-up sweep results and no checkpoints, for tests of what reads the tables
(the reports, linpath.load): it is written in a few milliseconds and needs no data set."""

from __future__ import annotations

import math
from pathlib import Path

from linpath.config.presets import preset
from linpath.config.spec import write_spec
from linpath.io.rundir import RunDir
from linpath.io.tables import write_csv
from linpath.sweep.grids import Grid
from linpath.sweep.items import format_rows
from linpath.train.log import LOG_COLUMNS

STEPS = (0, 4, 64, 1000)
# setting key -> (grid points, evaluation examples, standard error of the points or 0)
SETTINGS = {
    "test-interpolate-uniform21-fp32": (21, 10000, 0.0),
    "test-interpolate-uniform11-fp32-n500": (11, 500, 0.004),
}


def curve(r: int, t: int, x: float) -> tuple[float, float]:
    """Loss and error at x on replicate r's path from t: falling from a start that shrinks with t,
    with a bump in the middle whose height depends on t and r (so the barriers differ)."""
    start = 2.3 * math.exp(-t / 8)
    bump = (0.2 + 0.05 * r) * math.exp(-t / 200) * math.sin(math.pi * x) ** 2
    loss = 0.05 + start * (1 - x) ** 2 + bump
    return loss, min(1.0, 0.02 + 0.4 * loss)


def make_run(folder: Path, replicates: int = 2) -> RunDir:
    """A MNIST LeNet-300-100 run folder with both settings swept and a train log per replicate
    (no DONE markers: without checkpoints the report would note every kept step missing)."""
    spec = preset("mnist_lenet_300_100").with_overrides({"replicates": replicates})
    run = RunDir(Path(folder) / spec.run_name)
    run.root.mkdir(parents=True)
    write_spec(run, spec)
    for r in range(replicates):
        write_csv(run.train_log(r), LOG_COLUMNS, [[18760, 40, 0.1, 0.01, 0.06, 0.98 - 0.001 * r, 1.0]])
        for key, (points, examples, se) in SETTINGS.items():
            split, bn, _, precision = key.split("-")[:4]
            for t in STEPS:
                rows = []
                for x in Grid("uniform", points).xs():
                    loss, error = curve(r, t, x)
                    rows.append([r, t, x, split, bn, examples, precision, loss, error, se, se])
                path = run.sweep_dir / key / f"r{r}-t{t}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(format_rows(rows))
    return run
