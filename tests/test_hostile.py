"""A hostile user against the newest commands (issue 30, items 13, 16 and 17, and new cases of
the same classes): absurd options refused in one line before any work, killed imports that
leave nothing behind for ever, hand edits of tables and item files, commands at once.

Each case is recorded for docs/reliability.md (tests/_reliability.record)."""

from __future__ import annotations

import pytest

import linpath
from linpath.errors import LinpathError
from linpath.runs.spawn import MAX_CHILDREN, spawn
from linpath.sweep.evaluation import evaluation_subset
from linpath.sweep.grids import Grid
from linpath.sweep.run import run_sweep
from linpath.sweep.setting import SweepSetting

from . import kept_runs
from ._reliability import record
from .hostile_runs import untrained_run
from .test_cli import one_line_error
from .test_concurrency import files_of

# --- item 17: --eval-examples 0 and more than the split holds ---------------------------------


def test_eval_examples_zero_is_refused_before_anything(tmp_path, capsys, data_root):
    run = untrained_run(tmp_path)
    before = files_of(run.root)
    line = one_line_error(
        capsys, ["sweep", str(run.root), "--eval-examples", "0", "--data-root", str(data_root)]
    )
    assert line == (
        "linpath: error: --eval-examples 0 would evaluate no example: give a positive number, or leave the "
        "flag out to evaluate the whole split"
    )
    assert files_of(run.root) == before
    assert SweepSetting().eval_examples == 0 and SweepSetting().key.endswith(
        "-fp32"
    )  # the default: whole split
    record("bad-input", "sweep --eval-examples 0 (issue 30.17)", f"exit 2: {line}")


def test_eval_examples_beyond_the_split_is_refused_naming_its_size(tmp_path, mnist):
    run = untrained_run(tmp_path, replicates=(0,))
    setting = SweepSetting(grid=Grid(points=3), eval_examples=20000)
    with pytest.raises(LinpathError) as e:
        run_sweep(run, setting, mnist, from_steps=[0], progress=False)
    message = str(e.value)
    assert message == (
        "--eval-examples 20000 is more than the split holds (10000 examples); leave the flag out to evaluate "
        "the whole split"
    )
    assert not run.item_files(setting.key)
    whole, population = evaluation_subset(mnist.eval_set("test"), 10000)  # exactly the split: all of it
    assert len(whole) == 10000 and population is None
    record(
        "bad-input",
        "sweep --eval-examples 20000 on a 10,000-example split (issue 30.17)",
        f"refused: {message}",
    )


def test_the_api_refuses_more_examples_than_the_data_holds():
    inputs, labels = kept_runs.vectors(64)
    model = kept_runs.TinyMLP()
    state = model.state_dict()
    with pytest.raises(
        LinpathError, match=r"--eval-examples 65 is more than the split holds \(64 examples\)"
    ):
        linpath.path(model, state, state, (inputs, labels), grid=3, eval_examples=65)


# --- item 13: spawn --children bounded ----------------------------------------------------------


def test_spawn_children_are_bounded_before_any_training(tmp_path, capsys, data_root, mnist):
    run = untrained_run(tmp_path, replicates=(0,))
    argv = [
        "spawn",
        str(run.root),
        "--at",
        "16",
        "--children",
        "100000",
        "--data-root",
        str(data_root),
        "--quiet",
    ]
    line = one_line_error(capsys, argv)
    assert line == (
        f"linpath: error: --children 100000 is more than {MAX_CHILDREN}: each child is a full training to the "
        "end of the schedule and every pair a path (4999950000 of them)"
    )
    assert not run.spawn_root.exists()
    with pytest.raises(LinpathError, match="at least 2"):
        spawn(run.root, 16, mnist, children=True, progress=False)
    record(
        "bad-input", "spawn --at 16 --children 100000 (issue 30.13)", f"exit 2 before any training: {line}"
    )
