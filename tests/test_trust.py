"""Results you can trust: every stored result is checked before it is used, inputs have bounds,
and every refusal is one line (docs/reliability.md, "Round 2")."""

from __future__ import annotations

import gzip
import math
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from linpath import cli
from linpath.api import path as api_path
from linpath.api.resolve import resolve_model
from linpath.config.steps import kept_steps
from linpath.data import idx, mnist
from linpath.engine.scoring import Result
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.io.tensors import save_tensors
from linpath.models import build
from linpath.runs import stages
from linpath.runs.openlth import import_run
from linpath.sweep.grids import Grid
from linpath.sweep.items import item_problem
from linpath.sweep.paths_tables import format_rows, rebuild_tables
from linpath.sweep.run import SweepOptions, item_check, missing_checkpoints, run_sweep
from linpath.sweep.setting import SweepSetting
from tests.runs import copy_trained

from .test_cli import one_line_error
from .test_openlth import openlth_lenet_state, openlth_run  # noqa: F401 (a fixture)

SETTING = SweepSetting(grid=Grid(points=3))
STEPS = [4, 8]


def copy_run(small_run, tmp_path) -> RunDir:
    return copy_trained(small_run, tmp_path)


@pytest.fixture
def swept(small_run, mnist, tmp_path):
    """A copy of the small run with replicate 0 swept from t = 4 and 8 on a 3-point grid."""
    run = copy_run(small_run, tmp_path)
    assert run_sweep(run, SETTING, mnist, SweepOptions(from_steps=STEPS, replicates=[0], progress=False)) == 2
    rebuild_tables(run)
    return run


# --- 2. stored results are checked ------------------------------------------------------------

CORRUPTIONS = {
    "empty": lambda text: "",
    "header only": lambda text: text.splitlines(keepends=True)[0],
    "cut mid-row": lambda text: text[: len(text) - 17],
    "cut at a row boundary": lambda text: "".join(text.splitlines(keepends=True)[:-1]),
    "a middle row deleted": lambda text: "".join(
        line for i, line in enumerate(text.splitlines(keepends=True)) if i != 2
    ),
    "an extra row": lambda text: text + text.splitlines(keepends=True)[-1].replace("1.0,", "1.5,", 1),
    "a repeated row": lambda text: text + text.splitlines(keepends=True)[-1],
    "a non-number": lambda text: text.replace(text.splitlines()[2].split(",")[7], "oops", 1),
    "x off the grid": lambda text: text.replace("0.5,", "0.25,", 1),
    "another item's rows": lambda text: text.replace("0,4,", "1,4,"),
    "another setting's split": lambda text: text.replace(",test,", ",train,"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_an_unfinished_item_file_is_recomputed_and_named(swept, mnist, case, capsys):
    path = swept.item_file(SETTING.key, 0, 4)
    good = path.read_text()
    path.write_text(CORRUPTIONS[case](good))
    assert item_check(path, SETTING, 0, 4) is not None
    capsys.readouterr()
    assert (
        run_sweep(swept, SETTING, mnist, SweepOptions(from_steps=STEPS, replicates=[0], progress=False)) == 1
    )
    err = capsys.readouterr().err
    assert f"recomputing {path}:" in err and len(err.strip().splitlines()) == 1, err
    assert path.read_text() == good
    rebuild_tables(swept)
    assert rebuild_tables(swept) == 6


def test_a_valid_item_is_not_recomputed(swept, mnist, capsys):
    for t in STEPS:
        assert item_check(swept.item_file(SETTING.key, 0, t), SETTING, 0, t) is None
    assert (
        run_sweep(swept, SETTING, mnist, SweepOptions(from_steps=STEPS, replicates=[0], progress=False)) == 0
    )
    assert "recomputing" not in capsys.readouterr().err


def test_the_merge_leaves_out_an_invalid_item(swept, capsys):
    path = swept.item_file(SETTING.key, 0, 4)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))  # one row of three: a 1-point "curve"
    assert rebuild_tables(swept) == 3
    assert {row.split(",")[2] for row in swept.paths_csv.read_text().splitlines()[1:]} == {"8"}
    assert f"left out of the tables: {path}: 1 rows, the grid has 3 points" in capsys.readouterr().err
    path.write_text("".join(lines[:2]) + "0,4,oops\n")
    assert rebuild_tables(swept) == 3  # before: a ValueError traceback from the sort


def test_adaptive_items_are_checked_against_range_and_initial_points(tmp_path):
    grid = Grid(kind="adaptive", points=3)
    folder = tmp_path / "sweep" / f"test-interpolate-{grid.key}-fp32"
    folder.mkdir(parents=True)

    def item(xs):
        rows = [[0, 4, repr(x), "test", "interpolate", 10, "fp32", 0.1, 0.2, 0.0, 0.0] for x in xs]
        path = folder / "r0-t0000004.csv"
        path.write_text(format_rows(rows))
        return path

    assert item_problem(item([0.0, 0.25, 0.5, 0.75, 1.0])) is None
    assert item_problem(item([0.0, 0.25, 0.5, 0.75, 1.0]), SweepSetting(grid=grid)) is None
    assert "initial points are missing" in item_problem(item([0.0, 0.25, 1.0]))
    assert "outside the grid's range" in item_problem(item([0.0, 0.5, 1.0, 1.5]))


def test_a_missing_kept_checkpoint_is_named(swept, mnist, capsys):
    from linpath.config.spec import read_spec

    gone = swept.checkpoint(1, 16)
    gone.unlink()
    missing = missing_checkpoints(swept, read_spec(swept))
    assert missing == [(1, 16, gone)]
    run_sweep(swept, SETTING, mnist, SweepOptions(from_steps=STEPS, replicates=[0], progress=False))
    err = capsys.readouterr().err
    assert "1 kept checkpoint(s) missing" in err and str(gone) in err


@pytest.mark.parametrize("cut", ["row boundary", "mid-row", "non-number"])
def test_report_rebuilds_a_damaged_paths_csv_from_the_items(swept, cut):
    good = swept.paths_csv.read_text()
    lines = good.splitlines(keepends=True)
    damaged = {
        "row boundary": "".join(lines[:3]),
        "mid-row": good[: len(good) // 2],
        "non-number": good.replace(lines[2].split(",")[8], "x", 1),
    }[cut]
    swept.paths_csv.write_text(damaged)
    stages.report(swept.root)
    assert swept.paths_csv.read_text() == good


@pytest.mark.parametrize("cut", ["mid-row", "non-number"])
def test_a_damaged_paths_csv_without_items_is_one_line(swept, capsys, cut):
    """paths.csv is derived, never read back: without the item files there is nothing to report."""
    good = swept.paths_csv.read_text()
    shutil.rmtree(swept.sweep_dir)
    lines = good.splitlines(keepends=True)
    swept.paths_csv.write_text(
        lines[0] + lines[1][:20] + "\n" if cut == "mid-row" else good.replace(lines[2].split(",")[8], "x", 1)
    )
    line = one_line_error(capsys, ["report", str(swept.root)])
    assert "no finished sweep" in line


def poison(path: Path, n: int = 3) -> None:
    state = torch.load(path, weights_only=True)
    state["fc.weight"].view(-1)[:n] = math.nan
    save_tensors(path, state)


def test_a_nonfinite_checkpoint_is_refused_naming_the_tensor(small_run, mnist, tmp_path):
    run = copy_run(small_run, tmp_path)
    poison(run.checkpoint(0, 4))
    with pytest.raises(LinpathError, match=r"iter-0000004.pt: tensor 'fc.weight' has 3 NaN values"):
        run_sweep(run, SETTING, mnist, SweepOptions(from_steps=[4], replicates=[0], progress=False))
    assert run_sweep(
        run,
        SETTING,
        mnist,
        SweepOptions(from_steps=[4], replicates=[0], progress=False, allow_nonfinite=True),
    )
    rows = run.item_file(SETTING.key, 0, 4).read_text().splitlines()[1:]
    losses = [float(r.split(",")[7]) for r in rows]
    errors = [float(r.split(",")[8]) for r in rows]
    assert all(math.isnan(v) for v in losses + errors)  # before: error 0.9 beside a NaN loss


def test_cli_path_refuses_nonfinite_and_allows_it_on_request(small_run, tmp_path, capsys, data_root):
    run = copy_run(small_run, tmp_path)
    poison(run.checkpoint(0, 4))
    start, end = str(run.checkpoint(0, 4)), str(run.checkpoint(0, 300))
    common = ["--points", "3", "--data-root", str(data_root), "--out", str(tmp_path / "o"), "--device", "cpu"]
    line = one_line_error(capsys, ["path", start, end, *common])
    assert "tensor 'fc.weight' has 3 NaN values" in line
    assert cli.main(["path", start, end, *common, "--allow-nonfinite"]) == 0


def test_a_nan_loss_makes_the_error_nan():
    r = Result(math.nan, 0.902, 10)
    assert math.isnan(r.error) and math.isnan(r.error_se)
    assert Result(0.3, 0.1, 10).error == 0.1


# --- 3. bounds, one-line refusals, checks before side effects ---------------------------------


def test_kept_steps_are_bounded_before_they_are_built():
    with pytest.raises(LinpathError, match="longer than linpath's limit"):
        kept_steps(10**12)


@pytest.mark.parametrize(
    "steps,message", [("1000000000ep", "more than linpath's limit"), ("0it", "zero iterations")]
)
def test_training_steps_are_checked_before_the_run_folder_exists(tmp_path, capsys, steps, message):
    out = tmp_path / "runs"
    line = one_line_error(
        capsys, ["train", "mnist_lenet_300_100", "--training-steps", steps, "--out", str(out)]
    )
    assert message in line
    assert not out.exists()


@pytest.mark.parametrize(
    "grid,message",
    [
        ("uniform:100000000", "at most 10000 points"),
        ("values:0,1,1e308", "within ±3e+38"),
        ("uniform:5:0:1e300", "within ±3e+38"),
    ],
)
def test_grids_are_bounded(swept, capsys, grid, message):
    line = one_line_error(capsys, ["sweep", str(swept.root), "--grid", grid])
    assert message in line


def test_points_are_bounded(swept, capsys):
    assert "at most 10000 points" in one_line_error(
        capsys, ["sweep", str(swept.root), "--points", "100000000"]
    )


def test_bn_batches_are_checked_against_memory(swept, capsys, data_root, monkeypatch):
    import linpath.runtime.device as device

    monkeypatch.setattr(device, "available_memory", lambda dev: 1 << 30)
    line = one_line_error(
        capsys,
        [
            "sweep",
            str(swept.root),
            "--bn",
            "recompute",
            "--bn-batches",
            "100000",
            "--data-root",
            str(data_root),
        ],
    )
    assert "--bn-batches 100000" in line and "GiB" in line


def test_an_os_error_anywhere_is_one_line_naming_the_file(swept, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(swept.root / "report.md"))

    monkeypatch.setattr(stages, "report", refuse)
    line = one_line_error(capsys, ["report", str(swept.root)])
    assert "Permission denied" in line and "report.md" in line


def test_a_full_disk_inside_torch_save_is_one_line(tmp_path, monkeypatch):
    def full(obj, f):
        f.write(b"PK")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file data/0: file write failed"
        )

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(LinpathError, match="cannot write .*x.pt: .*failed writing file"):
        save_tensors(tmp_path / "x.pt", {"a": torch.zeros(2)})
    assert list(tmp_path.iterdir()) == []


def test_a_gzip_bomb_is_not_inflated(tmp_path):
    header = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big")
    bomb = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(header + bytes(10))
        zeros = bytes(1 << 20)
        for _ in range(96):
            f.write(zeros)
    tracemalloc.start()
    try:
        with pytest.raises(LinpathError, match="more than the 18 bytes its IDX header declares"):
            idx.read_bytes(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # before: the whole 96 MiB were inflated


def test_a_malformed_mirror_list_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LINPATH_MNIST_MIRRORS", "not a url,also bad")
    with pytest.raises(LinpathError, match="LINPATH_MNIST_MIRRORS must list base URLs"):
        mnist.ensure_files(tmp_path / "mnist")


@pytest.mark.parametrize(
    "source,message",
    [
        ("def net(:\n", "cannot import"),
        ("def net():\n    raise ValueError('no')\n", "raised ValueError: no"),
        ("net = 3\n", "int 'net', not a callable"),
        ("import nonexistent_module_xyz\ndef net(): pass\n", "cannot import"),
    ],
)
def test_a_bad_model_file_is_one_line(tmp_path, source, message):
    file = tmp_path / "m.py"
    file.write_text(source)
    with pytest.raises(LinpathError, match=message):
        resolve_model(f"{file}:net", None)


def test_a_model_without_a_module_name_is_one_line():
    with pytest.raises(LinpathError, match="module:callable"):
        resolve_model(":net", None)


@pytest.mark.parametrize("case", ["uint8", "float64", "labels out of range", "negative labels"])
def test_data_the_model_cannot_take_is_one_line(case):
    net = build("mnist_lenet_300_100", 10, seed=0)
    state = net.state_dict()
    inputs = torch.randn(8, 1, 28, 28)
    labels = torch.randint(0, 10, (8,))
    if case == "uint8":
        inputs = (inputs * 50).clamp(0, 255).to(torch.uint8)
    elif case == "float64":
        inputs = inputs.double()
    elif case == "labels out of range":
        labels[0] = 12
    else:
        labels[0] = -1
    if case == "float64":  # cast to the model's dtype, then evaluated
        curve = api_path(net, state, state, (inputs, labels), grid=2)
        assert np.isfinite(curve.loss).all()
        return
    with pytest.raises(LinpathError, match="the model cannot run|class labels run from"):
        api_path(net, state, state, (inputs, labels), grid=2)


def test_a_non_utf8_hparams_log_is_one_line_and_leaves_nothing(openlth_run, tmp_path):  # noqa: F811
    log = openlth_run / "replicate_1" / "main" / "hparams.log"
    log.write_bytes(log.read_bytes() + b"\xff\xfe\n")
    out = tmp_path / "runs"
    with pytest.raises(LinpathError, match="is not UTF-8 text"):
        import_run(openlth_run, out)
    assert not out.exists() or not any(out.iterdir())


def test_a_refused_import_leaves_no_half_made_run(openlth_run, tmp_path):  # noqa: F811
    bad = openlth_lenet_state(0)
    bad["fc.weight"] = torch.zeros(10, 50)
    torch.save(bad, openlth_run / "replicate_2" / "main" / "model_ep2_it0.pth")
    out = tmp_path / "runs"
    with pytest.raises(LinpathError, match="cannot map"):
        import_run(openlth_run, out)
    assert not out.exists() or not any(out.iterdir()), list(out.rglob("*"))


def test_from_steps_at_the_final_step_says_so(swept, mnist, capsys):
    assert (
        run_sweep(swept, SETTING, mnist, SweepOptions(from_steps=[300], replicates=[0], progress=False)) == 0
    )
    assert "note: --from-steps 300 is the final step" in capsys.readouterr().err


def test_sweep_progress_to_a_pipe_is_one_line_per_item(swept, mnist, capsys):
    for t in STEPS:
        swept.item_file(SETTING.key, 0, t).unlink()
    run_sweep(swept, SETTING, mnist, SweepOptions(from_steps=STEPS, replicates=[0], progress=True))
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [line.split(":")[0] for line in err.splitlines()] == ["sweep 1/2", "sweep 2/2"]


@pytest.mark.slow
def test_training_progress_to_a_pipe_is_one_line_per_epoch(tmp_path, capsys):
    from linpath.config.presets import preset
    from linpath.train.loop import train_replicate

    from .test_data import tiny_mnist_files, tiny_spec

    files = tiny_mnist_files(n_train=64, n_test=16)
    (tmp_path / "mnist").mkdir()
    for stem, data in files.items():
        (tmp_path / "mnist" / stem).write_bytes(data)
    source = mnist.load(tmp_path, tiny_spec(files, 64, 16))
    spec = preset("mnist_lenet_300_100").with_overrides({"training_steps": "3ep", "batch_size": 32})
    train_replicate(spec, RunDir(tmp_path / "run"), 0, source, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("train replicate 0")]
    assert len(lines) == 3 and "iteration 6/6" in lines[-1]
