"""Spawning children from a replicate's state at T (Frankle et al. 2020's instability)."""

import csv

import numpy as np
import pytest
import torch

import linpath
from linpath.analysis.metrics import metric
from linpath.cli import main
from linpath.config.presets import preset
from linpath.config.spec import read_spec
from linpath.errors import LinpathError
from linpath.io.rundir import SpawnDir
from linpath.io.tensors import load_state_dict
from linpath.runs import stages
from linpath.runs.spawn import SpawnNoise, SpawnOptions, child_seed, parent_state, spawn, spawn_dir
from linpath.sweep.grids import Grid
from linpath.sweep.paths_tables import PATH_COLUMNS
from linpath.sweep.setting import SweepSetting
from linpath.train.loop import Branch, train_replicate

pytestmark = pytest.mark.slow  # trains runs, runs subprocesses or torchrun

T, TOTAL = 16, 40


@pytest.fixture(scope="module")
def momentum_run(tmp_path_factory, data_root):
    """One replicate of LeNet with momentum 0.9, 40 iterations (kept t: 0,1,2,4,8,16,32,40)."""
    spec = preset("mnist_lenet_300_100").with_overrides(
        {"training_steps": f"{TOTAL}it", "momentum": 0.9, "replicates": 1}
    )
    return stages.train(spec, tmp_path_factory.mktemp("spawnruns"), data_root, device="cpu", progress=False)


def test_replay_rebuilds_the_exact_optimizer_state(momentum_run, mnist, tmp_path):
    spec = read_spec(momentum_run)
    start, info = parent_state(spec, momentum_run, 0, T, mnist, SpawnDir(tmp_path / "s"))
    assert info["replay_max_abs_weight_difference"] == 0.0
    buffers = [s["momentum_buffer"] for s in start["optimizer"]["state"].values()]
    assert len(buffers) == 6 and all(b.abs().sum() > 0 for b in buffers)
    assert not (tmp_path / "s" / "replay").exists()  # the scratch replay is removed


def test_child_on_the_parents_data_order_reproduces_the_parent(momentum_run, mnist, tmp_path):
    """Replayed momentum + resumed schedule + the parent's seed = the parent's own run, bitwise."""
    spec = read_spec(momentum_run)
    sdir = SpawnDir(tmp_path / "s")
    start, _ = parent_state(spec, momentum_run, 0, T, mnist, sdir)
    train_replicate(spec, sdir, 0, mnist, progress=False, branch=Branch(start, data_seed=spec.train.seed))
    child = load_state_dict(sdir.checkpoint(0, TOTAL))
    parent = load_state_dict(momentum_run.checkpoint(0, TOTAL))
    assert all(torch.equal(child[k], parent[k]) for k in parent)


def test_spawn_trains_children_and_measures_instability(momentum_run, mnist):
    setting = SweepSetting(grid=Grid(points=5))
    rows = spawn(momentum_run.root, T, mnist, setting, SpawnOptions(children=2, progress=False))
    assert len(rows) == 1 and (rows[0]["child_a"], rows[0]["child_b"]) == (0, 1)
    sdir = spawn_dir(momentum_run, 0, T)
    a, b = (load_state_dict(sdir.checkpoint(k, TOTAL)) for k in (0, 1))
    assert not torch.equal(a["fc.weight"], b["fc.weight"])  # different data orders
    with open(sdir.pair_csv(setting.key, 0, 1), newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == PATH_COLUMNS and len(table) == 5
    assert {(d["replicate"], d["t"]) for d in table} == {("0", str(T))}
    errors = [float(d["error"]) for d in table]
    assert rows[0]["error_barrier"] == pytest.approx(
        metric("barrier", np.linspace(0, 1, len(errors)), errors)
    )
    assert (momentum_run.root / "spawn" / "instability.csv").is_file()
    assert (momentum_run.root / "spawn" / "instability.png").is_file()
    assert sdir.pair_csv(setting.key, 0, 1).with_suffix(".png").is_file()
    assert (sdir.root / "spawn.json").is_file()
    # a second call reuses the finished children (same numbers, no retraining)
    before = sdir.checkpoint(0, TOTAL).stat().st_mtime_ns
    again = spawn(momentum_run.root, T, mnist, setting, SpawnOptions(children=2, progress=False))
    assert again == rows and sdir.checkpoint(0, TOTAL).stat().st_mtime_ns == before


def test_child_seeds_differ():
    assert len({child_seed(0, k) for k in range(4)} | {0}) == 5


def test_barrier():
    assert metric("barrier", [0.0, 0.5, 1.0], [0.1, 0.5, 0.3]) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"t": 5}, "no checkpoint at T=5"),
        ({"t": TOTAL}, "end of training"),
        ({"t": T, "options": SpawnOptions(children=1)}, "at least 2"),
        ({"t": T, "options": SpawnOptions(momentum_state="guess")}, "unknown momentum state"),
    ],
)
def test_spawn_errors(momentum_run, mnist, kwargs, message):
    with pytest.raises(LinpathError, match=message):
        spawn(momentum_run.root, source=mnist, **kwargs)


def test_cli_spawn(momentum_run, data_root, capsys):
    code = main(
        [
            "spawn",
            str(momentum_run.root),
            "--at",
            "32",
            "--children",
            "2",
            "--points",
            "3",
            "--momentum-state",
            "reset",
            "--data-root",
            str(data_root),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "T=32" in out and "error barrier" in out
    info = (spawn_dir(momentum_run, 0, 32).root / "spawn.json").read_text()
    assert "reset" in info


def test_perturbed_children_of_eps_zero_are_the_parents_continuation(momentum_run, mnist):
    """--perturb 0: every child trains from θ_T itself on the parent's data order, so each is
    the parent's own final state bitwise, and their barrier is exactly 0."""
    setting = SweepSetting(grid=Grid(points=3))
    rows = spawn(
        momentum_run.root, T, mnist, setting, SpawnOptions(children=2, progress=False, noise=SpawnNoise(0.0))
    )
    sdir = spawn_dir(momentum_run, 0, T, SpawnNoise(0.0))
    assert sdir.root.name.endswith("-perturb0")
    parent = load_state_dict(momentum_run.checkpoint(0, TOTAL))
    for k in (0, 1):
        child = load_state_dict(sdir.checkpoint(k, TOTAL))
        assert all(torch.equal(child[key], parent[key]) for key in parent)
    assert rows[0]["error_barrier"] == 0.0 and rows[0]["noise"] == "perturb:0"


def test_perturbed_and_aligned_barriers_against_a_plain_loop(momentum_run, mnist):
    """--perturb 1e-2 --align: children differ; the aligned barrier is the plain loop's on child b
    permuted to child a; the summary holds both curves with intervals."""
    from linpath.config.spec import build_model
    from linpath.engine.align import align_states
    from tests.oracle import plain_path

    setting = SweepSetting(grid=Grid(points=5))
    noise = SpawnNoise(1e-2, align=True)
    rows = spawn(momentum_run.root, T, mnist, setting, SpawnOptions(children=2, progress=False, noise=noise))
    assert [(r["aligned"], r["noise"]) for r in rows] == [(0, "perturb:0.01"), (1, "perturb:0.01")]
    sdir = spawn_dir(momentum_run, 0, T, noise)
    a, b = (load_state_dict(sdir.checkpoint(k, TOTAL)) for k in (0, 1))
    assert not torch.equal(a["fc.weight"], b["fc.weight"])
    spec = read_spec(momentum_run)
    evalset = mnist.eval_set("test", "cpu")
    make = lambda: build_model(spec, 10, seed=0)  # noqa: E731
    for row, end in zip(rows, (b, align_states(a, b, make()))):
        errors = [
            e for _, e in plain_path(make, a, end, evalset.inputs, evalset.labels, np.linspace(0, 1, 5))
        ]
        assert row["error_barrier"] == pytest.approx(
            metric("barrier", np.linspace(0, 1, 5), errors), abs=1e-12
        )
    curve = list(csv.DictReader(open(momentum_run.root / "spawn" / "instability_curve.csv")))
    kinds = {(d["noise"], d["aligned"]) for d in curve}  # with the module's SGD spawns where they ran first
    assert kinds >= {("perturb:0.01", "0"), ("perturb:0.01", "1")}
    assert (momentum_run.root / "spawn" / "stability.csv").is_file()
    loaded = linpath.load(momentum_run.root).instability  # the API's view: the same rows
    assert [str(v) for v in loaded["noise"]] == [d["noise"] for d in curve]
    assert list(loaded["mean"]) == pytest.approx([float(d["mean"]) for d in curve], abs=1e-15)
    again = spawn(momentum_run.root, T, mnist, setting, SpawnOptions(children=2, progress=False, noise=noise))
    assert again == rows  # read back, not evaluated again
