"""A hostile user against the newest commands (issue 30, items 13, 16 and 17, and new cases of
the same classes): absurd options refused in one line before any work, killed imports that
leave nothing behind for ever, hand edits of tables and item files, commands at once.

Each case is recorded for docs/reliability.md (tests/_reliability.record)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import linpath
from linpath.errors import LinpathError
from linpath.io.scratch import remove_stale_scratch
from linpath.runs.import_dir import IMPORT_KINDS, import_folders
from linpath.runs.spawn import MAX_CHILDREN, spawn
from linpath.sweep.evaluation import evaluation_subset
from linpath.sweep.grids import Grid
from linpath.sweep.run import run_sweep
from linpath.sweep.setting import SweepSetting

from . import kept_runs
from ._reliability import record
from .hostile_runs import untrained_run
from .test_cli import one_line_error
from .test_concurrency import Holder, files_of
from .test_openlth import openlth_run  # noqa: F401 (a fixture)

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


# --- item 16: a killed import leaves nothing for ever ------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def checkpoint_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    for t in (0, 10):
        torch.save(kept_runs.TinyMLP().state_dict(), folder / f"step-{t}.pt")
    return folder


def test_a_killed_imports_scratch_folder_is_removed_by_the_next_import(tmp_path):
    out = tmp_path / "runs"
    stale = out / f".import-ckpts-0123456789.{dead_pid()}.tmp"
    (stale / "replicate-0" / "checkpoints").mkdir(parents=True)
    (stale / "replicate-0" / "checkpoints" / "iter-0000000.pt").write_bytes(b"x" * 1000)
    theirs = out / ".my-own.123.tmp"  # a user's folder of that shape: not an import's, kept
    theirs.mkdir()
    run, _ = import_folders([checkpoint_folder(tmp_path / "ckpts")], out, pattern="step-{t}.pt")
    assert not stale.exists() and theirs.is_dir() and run.spec_path.is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted([run.root.name, theirs.name])
    record(
        "fault",
        "a killed import's .import-*.<pid>.tmp/ left behind (issue 30.16)",
        "removed by the next import",
    )


def test_a_live_imports_scratch_folder_is_kept(tmp_path):
    out = tmp_path / "runs"
    live = out / ".import-ckpts-0123456789.1.tmp"
    live.mkdir(parents=True)
    with Holder(live, "scratch") as other:
        renamed = live.with_name(f".import-ckpts-0123456789.{other.pid}.tmp")
        live.rename(renamed)
        assert remove_stale_scratch(out, IMPORT_KINDS) == 0 and renamed.is_dir()
    assert remove_stale_scratch(out, IMPORT_KINDS) == 1 and not renamed.exists()


@pytest.mark.slow
def test_an_import_killed_by_sigkill_mid_write_leaves_nothing_after_the_next(tmp_path):
    from .test_faults import start, wait_for

    source = checkpoint_folder(tmp_path / "ckpts")
    out = tmp_path / "runs"
    marker = tmp_path / "stalled"
    child = start(["import", str(source), "--pattern", "step-{t}.pt", "--out", str(out)], "iter-|2", marker)
    try:
        assert wait_for(marker.exists, child), child.communicate()[1][-2000:]
        assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    finally:
        child.kill()
        child.wait()
    run, _ = import_folders([source], out, pattern="step-{t}.pt")
    assert [p.name for p in out.iterdir()] == [run.root.name]
    assert run.saved_steps(0) == [0, 10]
    record(
        "fault",
        "kill -9 of linpath import inside its second checkpoint write",
        "the rerun removed its scratch folder and imported whole",
    )


@pytest.mark.slow
def test_a_killed_openlth_import_leaves_no_half_run(tmp_path, openlth_run):  # noqa: F811
    from linpath.runs.openlth import import_run

    from .test_faults import start, wait_for

    out = tmp_path / "runs"
    marker = tmp_path / "stalled"
    child = start(["import-openlth", str(openlth_run), "--out", str(out)], "iter-|2", marker)
    try:
        assert wait_for(marker.exists, child), child.communicate()[1][-2000:]
    finally:
        child.kill()
        child.wait()
    assert all(p.name.startswith(".") for p in out.iterdir())  # no visible half run
    run, _ = import_run(openlth_run, out)
    assert [p.name for p in out.iterdir()] == [run.root.name] and run.replicates()
    record(
        "fault",
        "kill -9 of linpath import-openlth mid-write",
        "no half run visible; the rerun removed the scratch and imported",
    )
