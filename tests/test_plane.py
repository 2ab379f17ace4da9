"""Planes against a plain loop: the mixed state dict built by hand, load_state_dict'ed into a
fresh model and evaluated with a DataLoader, on a tiny MLP and a tiny BatchNorm CNN (whose
BatchNorm the engine folds, so refolding per point is checked too)."""

import csv
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import linpath
from linpath.data.source import EvalSet
from linpath.engine.evaluator import Layout, PathEvaluator
from linpath.engine.plane import Plane, random_directions, through_three
from linpath.errors import LinpathError


def tiny_mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3)
    )


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )


MODELS = {"mlp": (tiny_mlp, (12,)), "cnn": (tiny_cnn, (2, 6, 6))}


def random_state(make, seed):
    model = make()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith("running_var"):
                v.copy_(torch.rand(v.shape, generator=g) + 0.5)
            elif k.endswith("num_batches_tracked"):
                v.fill_(seed)
            elif v.is_floating_point():
                v.copy_(torch.randn(v.shape, generator=g) * 0.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


def data(shape, n=40, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)


@torch.no_grad()
def plain_eval(make, state, inputs, labels):
    """(mean cross-entropy, error) of a fresh model loaded with `state`."""
    model = make()
    model.load_state_dict(state)
    model.eval()
    loss, wrong = 0.0, 0
    for xb, yb in DataLoader(TensorDataset(inputs, labels), batch_size=16):
        out = model(xb)
        loss += float(F.cross_entropy(out, yb, reduction="sum"))
        wrong += int((out.argmax(1) != yb).sum())
    return loss / len(labels), wrong / len(labels)


def mixed(o, a, b, alpha, beta):
    """θ_o + α(θ_a - θ_o) + β(θ_b - θ_o) by hand; integer buffers from θ_o."""
    return {
        k: o[k] + alpha * (a[k] - o[k]) + beta * (b[k] - o[k]) if o[k].is_floating_point() else o[k]
        for k in o
    }


def hand_direction(center, g):
    """Li et al.'s filter-normalized direction, filter by filter in a plain loop."""
    out = {}
    for k, w in center.items():
        if not w.is_floating_point():
            continue
        if w.dim() <= 1:
            out[k] = torch.zeros_like(w)
            continue
        d = torch.randn(w.shape, generator=g, dtype=torch.float64)
        for i in range(w.shape[0]):
            d[i] = d[i] / (d[i].norm() + 1e-10) * w[i].double().norm()
        out[k] = d.float()
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_plane_equals_plain_loop(name):
    make, shape = MODELS[name]
    o, a, b = (random_state(make, s) for s in (1, 2, 3))
    inputs, labels = data(shape)
    surface = linpath.plane(make(), o, a, b, (inputs, labels), grid=(3, 2), span=((-0.5, 1.25), (-0.25, 0.6)))
    assert surface.loss.shape == surface.error.shape == (2, 3)
    np.testing.assert_allclose(surface.alpha, [-0.5, 0.375, 1.25])
    np.testing.assert_allclose(surface.beta, [-0.25, 0.6])
    for i, beta in enumerate(surface.beta):
        for j, alpha in enumerate(surface.alpha):
            loss, error = plain_eval(make, mixed(o, a, b, alpha, beta), inputs, labels)
            assert surface.loss[i, j] == pytest.approx(loss, abs=1e-5, rel=1e-5)
            assert surface.error[i, j] == pytest.approx(error, abs=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_plane_corners_are_the_states(name):
    make, shape = MODELS[name]
    o, a, b = (random_state(make, s) for s in (1, 2, 3))
    inputs, labels = data(shape)
    surface = linpath.plane(make(), o, a, b, (inputs, labels), grid=3, span=(0.0, 1.0))
    for (i, j), state in zip([(0, 0), (0, 2), (2, 0)], (o, a, b)):
        assert surface.loss[i, j] == pytest.approx(plain_eval(make, state, inputs, labels)[0], abs=1e-5)


def test_engine_refolds_batchnorm_per_point():
    make, shape = MODELS["cnn"]
    o, a, b = (random_state(make, s) for s in (1, 2, 3))
    inputs, labels = data(shape)
    engine = PathEvaluator(make(), EvalSet(inputs, labels), layout=Layout(use_stem=False))
    assert engine.folds_bn
    plane = Plane(engine, o, *through_three(o, a, b))
    for alpha, beta in [(0.2, 0.7), (1.1, -0.1), (0.2, 0.7)]:
        loss, error = plain_eval(make, mixed(o, a, b, alpha, beta), inputs, labels)
        result = plane.evaluate_point(alpha, beta)
        assert result.loss == pytest.approx(loss, abs=1e-5, rel=1e-5)
        assert result.error == pytest.approx(error, abs=1e-5)
    # integer buffers come from the origin
    assert int(engine.targets["1.num_batches_tracked"]) == 1


@pytest.mark.parametrize("name", list(MODELS))
def test_random_plane_equals_plain_loop(name):
    make, shape = MODELS[name]
    c = random_state(make, 5)
    inputs, labels = data(shape)
    surface = linpath.random_plane(make(), c, (inputs, labels), grid=(2, 3), span=(-0.4, 0.3), seed=7)
    g = torch.Generator().manual_seed(7)
    d1, d2 = hand_direction(c, g), hand_direction(c, g)
    for i, beta in enumerate(surface.beta):
        for j, alpha in enumerate(surface.alpha):
            state = {k: c[k] + alpha * d1[k] + beta * d2[k] if c[k].is_floating_point() else c[k] for k in c}
            loss, error = plain_eval(make, state, inputs, labels)
            assert surface.loss[i, j] == pytest.approx(loss, abs=1e-5, rel=1e-5)
            assert surface.error[i, j] == pytest.approx(error, abs=1e-5)
    assert surface.marks == ((0.0, 0.0, "center"),)


def test_random_directions_are_filter_normalized():
    c = random_state(tiny_cnn, 5)
    d1, d2 = random_directions(c, seed=3)
    for k, w in c.items():
        if not w.is_floating_point():
            assert k not in d1
        elif w.dim() <= 1:  # biases and BatchNorm entries stay put
            assert torch.count_nonzero(d1[k]) == 0 and torch.count_nonzero(d2[k]) == 0
        else:
            for i in range(w.shape[0]):
                assert float(d1[k][i].norm()) == pytest.approx(float(w[i].norm()), rel=1e-5)
            assert not torch.allclose(d1[k], d2[k])
    again, _ = random_directions(c, seed=3)
    assert all(torch.equal(d1[k], again[k]) for k in d1)


def test_custom_loss_has_no_error_and_plot_marks_states(tmp_path):
    make, shape = MODELS["mlp"]
    o, a, b = (random_state(make, s) for s in (1, 2, 3))
    inputs = data(shape)[0]
    targets = torch.randn(len(inputs), 3)
    surface = linpath.plane(make(), o, a, b, (inputs, targets), grid=3, loss_fn=F.mse_loss)
    assert surface.error is None
    fig = surface.plot(tmp_path / "plane.png")
    assert (tmp_path / "plane.png").stat().st_size > 0
    assert len(fig.axes) == 2  # one contour and its colour bar
    rows = list(csv.DictReader(open(surface.to_csv(tmp_path / "plane.csv"))))
    assert len(rows) == 9 and math.isnan(float(rows[0]["error"]))
    assert float(rows[1]["alpha"]) == pytest.approx(0.5) and float(rows[1]["beta"]) == pytest.approx(-0.5)


def test_bad_grid_and_mismatched_states():
    make, shape = MODELS["mlp"]
    o, a, b = (random_state(make, s) for s in (1, 2, 3))
    d = data(shape)
    with pytest.raises(LinpathError, match="span"):
        linpath.plane(make(), o, a, b, d, span=(1.0, 0.0))
    with pytest.raises(LinpathError, match="grid"):
        linpath.plane(make(), o, a, b, d, grid=0)
    wrong = dict(b)
    wrong["1.weight"] = torch.zeros(7, 11)
    with pytest.raises(LinpathError, match="state b"):
        linpath.plane(make(), o, a, wrong, d, grid=2)


MODEL_FILE = """
import torch
from torch import nn


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
"""


def test_cli_plane_of_three_files(tmp_path, capsys):
    from linpath.cli import main

    (tmp_path / "tiny.py").write_text(MODEL_FILE)
    names = []
    for s, name in zip((1, 2, 3), ("init", "final", "other")):
        torch.save(random_state(tiny_mlp, s), tmp_path / f"{name}.pt")
        names.append(str(tmp_path / f"{name}.pt"))
    inputs, labels = data((12,))
    torch.save((inputs, labels), tmp_path / "data.pt")
    out = tmp_path / "out"
    argv = [*names, "--model", f"{tmp_path / 'tiny.py'}:tiny", "--data", str(tmp_path / "data.pt")]
    assert main(["plane", *argv, "--grid", "3,2", "--span", "-0.5,1.5", "--out", str(out), "--quiet"]) == 0
    assert "wrote:" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "plane.csv")))
    assert [list(r) for r in rows[:1]] == [["alpha", "beta", "loss", "error"]]
    assert len(rows) == 6 and (out / "plane.png").stat().st_size > 0
    o, a, b = (random_state(tiny_mlp, s) for s in (1, 2, 3))
    for row in rows:
        alpha, beta = float(row["alpha"]), float(row["beta"])
        loss, error = plain_eval(tiny_mlp, mixed(o, a, b, alpha, beta), inputs, labels)
        assert float(row["loss"]) == pytest.approx(loss, abs=1e-5, rel=1e-5)
        assert float(row["error"]) == pytest.approx(error, abs=1e-5)
    assert {float(r["alpha"]) for r in rows} == {-0.5, 0.5, 1.5}
    assert {float(r["beta"]) for r in rows} == {-0.5, 1.5}
    assert main(["plane", *names[:2], "--model", "x:y", "--data", "d"]) == 2
    assert "three state files" in capsys.readouterr().err


@pytest.mark.parametrize("name,stem", [("mlp", "1"), ("cnn", "0")])
def test_plane_with_mixed_stem_equals_plain_loop(name, stem):
    """The stem's output mixed from the three anchors' (the shortcut a path takes) gives the
    plain loop's values; a small stem memory forces several chunks of examples."""
    make, shape = MODELS[name]
    o, a, b = (random_state(make, s) for s in (1, 2, 3))
    inputs, labels = data(shape)
    model = make()
    model.linear_stem = stem
    engine = PathEvaluator(
        model, EvalSet(inputs, labels), batch_size=8, layout=Layout(use_stem=True, stem_memory=1)
    )
    assert engine.uses_stem
    alphas, betas = [-0.2, 0.3, 0.7], [0.1, 0.25]  # BatchNorm variances stay positive
    rows = Plane(engine, o, *through_three(o, a, b)).evaluate(alphas, betas)
    for i, beta in enumerate(betas):
        for j, alpha in enumerate(alphas):
            loss, error = plain_eval(make, mixed(o, a, b, alpha, beta), inputs, labels)
            assert rows[i][j].loss == pytest.approx(loss, abs=1e-5, rel=1e-5)
            assert rows[i][j].error == pytest.approx(error, abs=1e-5)


def test_plane_resumes_from_its_rows_file(tmp_path, monkeypatch):
    """Finished rows are kept; a rerun evaluates only the missing ones and gives the same
    surface; another plane never reuses (or overwrites) them. The row files are removed
    first, so this is a plane.csv as versions before row files wrote it (rows there only);
    tests/test_plane_rows.py tests the row files."""
    make, shape = MODELS["mlp"]
    o, a, b = (random_state(make, s) for s in (1, 2, 3))
    d = data(shape)
    rows_file = tmp_path / "plane.csv"
    seen = []
    full = linpath.plane(
        make(), o, a, b, d, grid=(3, 4), rows_file=rows_file, progress=lambda i, n: seen.append((i, n))
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    lines = rows_file.read_text().splitlines()
    assert len(lines) == 1 + 12
    shutil.rmtree(tmp_path / "plane.rows")
    rows_file.write_text(
        "\n".join(lines[:-4] + [lines[-1].replace(",", ";")]) + "\n"
    )  # row 2 cut short; of row 3 one damaged line

    evaluated = []
    original = Plane.evaluate

    def counting(self, alphas, betas, progress=None):
        evaluated.extend(betas)
        return original(self, alphas, betas, progress)

    monkeypatch.setattr(Plane, "evaluate", counting)
    again = linpath.plane(make(), o, a, b, d, grid=(3, 4), rows_file=rows_file)
    assert evaluated == [full.beta[2], full.beta[3]]
    np.testing.assert_array_equal(again.loss, full.loss)
    np.testing.assert_array_equal(again.error, full.error)
    before = rows_file.read_text()
    with pytest.raises(LinpathError, match="holds another plane"):
        linpath.plane(make(), o, b, a, d, grid=(3, 4), rows_file=rows_file)
    with pytest.raises(LinpathError, match="holds another plane"):
        linpath.plane(make(), o, a, b, d, grid=(3, 5), rows_file=rows_file)
    assert rows_file.read_text() == before


def test_plane_of_a_run_is_a_setting_of_its_own_and_resumes(small_run, data_root, tmp_path, capsys):
    """A run's plane lands in <run>/plane/<key>/ (states and settings in the key), with the
    replicate's kept checkpoints projected onto it; a rerun evaluates nothing; a point equals a
    hand-mixed LeNet evaluated on the MNIST test set; a random plane is a setting of its own."""
    from linpath.cli import main
    from linpath.data import load
    from linpath.models import build
    from tests.runs import copy_trained

    run = copy_trained(small_run, tmp_path)
    argv = ["plane", str(run.root), "--replicate", "0", "--other-replicate", "1", "--grid", "3"]
    argv += ["--span", "0,1", "--data-root", str(data_root)]
    assert main(argv) == 0
    assert capsys.readouterr().err.count("row ") == 3
    folder = run.root / "plane" / "r0-r1-test-3x3-span0to1-fp32"
    rows = list(csv.DictReader(open(folder / "plane.csv")))
    assert len(rows) == 9 and (folder / "plane.png").is_file()
    steps = run.saved_steps(0)
    trajectory = list(csv.DictReader(open(folder / "trajectory.csv")))
    assert [int(r["t"]) for r in trajectory] == steps
    assert [float(trajectory[0][c]) for c in ("alpha", "beta")] == pytest.approx([0, 0], abs=1e-9)
    assert [float(trajectory[-1][c]) for c in ("alpha", "beta")] == pytest.approx([1, 0], abs=1e-9)

    states = [torch.load(run.checkpoint(q, t), weights_only=True) for q, t in ((0, 0), (0, 300), (1, 300))]
    test = load("mnist", data_root).eval_set("test", "cpu")
    make = lambda: build("mnist_lenet_300_100", 10, seed=0)  # noqa: E731
    row = next(r for r in rows if float(r["alpha"]) == 0.5 and float(r["beta"]) == 0.5)
    loss, error = plain_eval(make, mixed(*states, 0.5, 0.5), test.inputs, test.labels)
    assert float(row["loss"]) == pytest.approx(loss, rel=1e-5) and float(row["error"]) == pytest.approx(error)

    before = (folder / "plane.csv").read_text()
    assert main(argv) == 0
    assert "row " not in capsys.readouterr().err
    assert (folder / "plane.csv").read_text() == before
    assert main(["plane", str(run.root), "--seed", "0", "--grid", "2", "--data-root", str(data_root)]) == 0
    assert (run.root / "plane" / "r0-t300-random-seed0-test-2x2-span-0.5to1.5-fp32" / "plane.csv").is_file()


def test_report_lists_finished_planes_and_names_unfinished_ones(tmp_path):
    from linpath.analysis.plane import Surface, read_surface
    from linpath.io.rundir import RunDir
    from linpath.report.markdown import plane_lines

    loss = np.array([[3.0, 2.0, 4.0], [1.5, 0.25, 9.0]])  # lowest at α = 0.5, β = 1
    error = np.array([[0.5, 0.4, 0.9], [0.3, 0.2, 0.1]])  # lowest at α = 1, β = 1
    surface = Surface(np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0]), loss, error, examples=10)
    done = tmp_path / "plane" / "r0-r1-test-3x2-span0to1-fp32"
    surface.to_csv(done / "plane.csv")
    back = read_surface(done / "plane.csv")
    np.testing.assert_array_equal(back.loss, loss)
    np.testing.assert_array_equal(back.error, error)
    partial = tmp_path / "plane" / "r0-at100-test-3x2-span0to1-fp32"
    partial.mkdir()
    (partial / "plane.json").write_text('{"fingerprint": "x", "alpha": [0.0, 0.5, 1.0], "beta": [0.0, 1.0]}')
    (partial / "plane.csv").write_text("\n".join((done / "plane.csv").read_text().splitlines()[:4]) + "\n")
    text = "\n".join(plane_lines(RunDir(tmp_path)))
    assert "lowest loss 0.2500 at (α, β) = (0.50, 1.00); lowest error 0.1000 at (α, β) = (1.00, 1.00)" in text
    assert "`r0-at100-test-3x2-span0to1-fp32` left out" in text and "not a complete grid" in text
