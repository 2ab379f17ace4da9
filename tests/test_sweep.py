"""The sweep against independent computations: a plain loop, and the checkpoints themselves."""

import csv

import pytest
import torch

from linpath.engine.evaluator import Layout, PathEvaluator
from linpath.engine.scoring import evaluate_model
from linpath.io.tensors import load_state_dict
from linpath.models import build
from linpath.runs import stages
from linpath.sweep import run as sweep_module
from linpath.sweep.grids import Grid
from linpath.sweep.run import SweepOptions
from linpath.sweep.setting import SweepSetting
from tests.oracle import plain_path
from tests.runs import copy_trained

STEPS = [0, 16, 256]
POINTS = 7


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def swept(small_run, data_root, tmp_path_factory):
    run = copy_trained(small_run, tmp_path_factory.mktemp("swept"))
    setting = SweepSetting(grid=Grid(points=POINTS))
    stages.sweep(
        run.root, setting, SweepOptions(data_root=data_root, device="cpu", from_steps=STEPS, progress=False)
    )
    return run, rows_of(run.paths_csv)


def plain_loop(run, mnist, r, t, xs):
    """The oracle on an nn.Sequential written here (not linpath's LeNet), on inputs normalized here."""
    a = torch.load(run.checkpoint(r, t), weights_only=True)
    b = torch.load(run.checkpoint(r, 300), weights_only=True)
    inputs = (mnist.test.images.float() / 255.0 - 0.1307) / 0.3081
    layers = {"fc_layers.0": "1", "fc_layers.1": "3", "fc": "5"}

    def sequential():
        return torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(784, 300),
            torch.nn.ReLU(),
            torch.nn.Linear(300, 100),
            torch.nn.ReLU(),
            torch.nn.Linear(100, 10),
        )

    def rename(key):
        layer, _, param = key.rpartition(".")
        return f"{layers[layer]}.{param}"

    return plain_path(sequential, a, b, inputs, mnist.test.labels, xs, rename=rename, batch_size=128)


def test_paths_csv_has_every_point_once(swept):
    run, rows = swept
    assert list(rows[0]) == [
        "setting",
        "replicate",
        "t",
        "x",
        "split",
        "bn",
        "examples",
        "precision",
        "loss",
        "error",
        "loss_se",
        "error_se",
    ]
    assert {r["loss_se"] for r in rows} == {"0.0"}  # the whole split: exact
    keys = [(r["replicate"], r["t"], r["x"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * len(STEPS) * POINTS
    assert sorted({float(r["x"]) for r in rows}) == pytest.approx(
        [i / (POINTS - 1) for i in range(POINTS)], abs=1e-15
    )


def test_sweep_equals_an_independent_plain_loop(swept, mnist):
    run, rows = swept
    for r in (0, 1):
        for t in (0, 256):
            ours = sorted(
                (float(d["x"]), float(d["loss"]), float(d["error"]))
                for d in rows
                if int(d["replicate"]) == r and int(d["t"]) == t
            )
            reference = plain_loop(run, mnist, r, t, [x for x, _, _ in ours])
            for (x, loss, error), (ref_loss, ref_error) in zip(ours, reference):
                assert loss == pytest.approx(ref_loss, abs=1e-5), (r, t, x)
                assert error == pytest.approx(ref_error, abs=2e-4), (r, t, x)  # at most 2 argmax ties flip


def test_endpoints_equal_the_checkpoints_own_evaluation(swept, mnist):
    run, rows = swept
    evalset = mnist.eval_set("test")
    for t in STEPS + [300]:
        model = build("mnist_lenet_300_100", 10)
        model.load_state_dict(load_state_dict(run.checkpoint(1, t)))
        own = evaluate_model(model, evalset)
        x = 0.0 if t < 300 else 1.0
        row = next(
            d
            for d in rows
            if d["replicate"] == "1" and int(d["t"]) == (t if t < 300 else 0) and float(d["x"]) == x
        )
        assert float(row["loss"]) == pytest.approx(own.loss, abs=1e-6)
        assert float(row["error"]) == own.error


def test_the_linear_stem_gives_the_plain_engine_result(small_run, mnist):
    a = load_state_dict(small_run.checkpoint(0, 4))
    b = load_state_dict(small_run.checkpoint(0, 300))
    xs = [0.0, 0.3, 0.77, 1.0]
    evalset = mnist.eval_set("test")
    fast = PathEvaluator(
        build("mnist_lenet_300_100", 10), evalset, layout=Layout(use_stem=True)
    ).evaluate_path(a, b, xs)
    plain = PathEvaluator(
        build("mnist_lenet_300_100", 10), evalset, layout=Layout(use_stem=False)
    ).evaluate_path(a, b, xs)
    for f, p in zip(fast, plain):
        assert f.loss == pytest.approx(p.loss, abs=1e-5)
        assert f.error == pytest.approx(p.error, abs=2e-4)


def test_an_interrupted_sweep_resumes_to_the_same_table(small_run, data_root, monkeypatch, tmp_path):
    import shutil

    from linpath.io.rundir import RunDir

    setting = SweepSetting(grid=Grid(points=5))
    reference = RunDir(tmp_path / "ref" / small_run.root.name)
    interrupted = RunDir(tmp_path / "int" / small_run.root.name)
    for run in (reference, interrupted):
        shutil.copytree(
            small_run.root, run.root, ignore=shutil.ignore_patterns("sweep", "paths.csv", ".*lock")
        )
    stages.sweep(
        reference.root,
        setting,
        SweepOptions(data_root=data_root, device="cpu", from_steps=STEPS, progress=False),
    )

    real = PathEvaluator.path
    calls = {"n": 0}

    def dies_on_the_third_item(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PathEvaluator, "path", dies_on_the_third_item)
    with pytest.raises(KeyboardInterrupt):
        stages.sweep(
            interrupted.root,
            setting,
            SweepOptions(data_root=data_root, device="cpu", from_steps=STEPS, progress=False),
        )
    assert len(list((interrupted.sweep_dir / setting.key).glob("*.csv"))) == 2
    monkeypatch.setattr(PathEvaluator, "path", real)
    evaluated = sweep_module.run_sweep(
        interrupted,
        setting,
        __import__("linpath.data", fromlist=["load"]).load("mnist", data_root),
        SweepOptions(from_steps=STEPS, progress=False),
    )
    assert evaluated == 2 * len(STEPS) - 2  # only the unfinished items
    sweep_module.rebuild_tables(interrupted)
    assert interrupted.paths_csv.read_text() == reference.paths_csv.read_text()


def test_a_sweep_with_recompute_an_adaptive_grid_and_a_subset(small_run, data_root, tmp_path):
    from linpath.data import load
    from linpath.sweep.grids import parse_grid

    small_run = copy_trained(small_run, tmp_path)
    setting = SweepSetting(bn="recompute", bn_batches=2, grid=parse_grid("adaptive:5:0.1"), eval_examples=500)
    assert setting.key == "test-recompute2-adaptive5-tol0.1-loss-fp32-n500"
    assert (
        sweep_module.run_sweep(
            small_run,
            setting,
            load("mnist", data_root),
            SweepOptions(from_steps=[0], replicates=[0], progress=False),
        )
        == 1
    )
    rows = rows_of(small_run.item_file(setting.key, 0, 0))
    xs = [float(d["x"]) for d in rows]
    assert xs == sorted(xs) and len(xs) > 5 and xs[0] == 0.0 and xs[-1] == 1.0
    assert all(d["bn"] == "recompute" and d["examples"] == "500" and float(d["loss_se"]) > 0 for d in rows)


def _item(run, setting, r, t, rows):
    from linpath.io.files import atomic_write_text
    from linpath.sweep.paths_tables import format_rows

    atomic_write_text(run.sweep_dir / setting / f"r{r}-t{t:07d}.csv", format_rows(rows))


def test_a_second_sweep_setting_never_enters_the_papers_curve(tmp_path):
    """Was: a 10-example sweep at x = 0.05, 0.15 was spliced into the full-set curve from t = 0."""
    from linpath.analysis.curves import PAPER_SETTING, load_curves, settings_of
    from linpath.io.rundir import RunDir

    run = RunDir(tmp_path)
    full = [
        [0, 0, repr(x), "test", "interpolate", 10000, "fp32", "1.0", "0.1", "0.0", "0.0"]
        for x in Grid(points=100).xs()
    ]
    tiny = [
        [0, 0, repr(x), "test", "interpolate", 10, "fp32", "9.0", "0.9", "1.0", "0.3"] for x in (0.05, 0.15)
    ]
    _item(run, PAPER_SETTING, 0, 0, full)
    _item(run, "test-interpolate-values2-fp32-n10", 0, 0, tiny)
    assert settings_of(run) == [PAPER_SETTING, "test-interpolate-values2-fp32-n10"]
    paper = load_curves(run, PAPER_SETTING).by_item[(0, 0)]
    assert paper["x"].tolist() == Grid(points=100).xs() and paper["error"].tolist() == [0.1] * 100
    other = load_curves(run, "test-interpolate-values2-fp32-n10")
    assert other.examples == 10 and other.by_item[(0, 0)]["x"].tolist() == [0.05, 0.15]


def test_each_setting_has_its_own_table_and_the_union_names_it(tmp_path):
    from linpath.io.rundir import RunDir
    from linpath.sweep.paths_tables import PATH_COLUMNS, rebuild_tables

    run = RunDir(tmp_path)
    _item(run, "a", 0, 0, [[0, 0, "0.0", "test", "interpolate", 5, "fp32", "1.0", "0.5", "0.1", "0.1"]])
    _item(run, "b", 1, 4, [[1, 4, "1.0", "train", "interpolate", 5, "fp32", "2.0", "0.5", "0.1", "0.1"]])
    assert rebuild_tables(run) == 2
    union = rows_of(run.paths_csv)
    assert list(union[0]) == ["setting", *PATH_COLUMNS] and [d["setting"] for d in union] == ["a", "b"]
    assert [d["split"] for d in rows_of(run.results_dir("b") / "paths.csv")] == ["train"]
