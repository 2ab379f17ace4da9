"""The Python API (linpath.path), the example script, and `linpath path`."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import linpath
from linpath.cli import main
from linpath.engine.interpolate import interpolate_state
from linpath.errors import LinpathError
from linpath.models import build
from linpath.sweep.grids import Grid
from linpath.sweep.paths_tables import PATH_COLUMNS
from linpath.sweep.setting import SweepSetting
from tests.oracle import plain_path

REPO = Path(__file__).resolve().parents[1]


class TinyNet(nn.Module):
    """A user's model: a conv with BatchNorm, then a linear head (no linpath conventions)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 6 * 6, classes)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).flatten(1))


class SmoothNet(TinyNet):
    """TinyNet with tanh for relu: a loss smooth along the path, for finite differences."""

    def forward(self, x):
        return self.head(torch.tanh(self.norm(self.conv(x))).flatten(1))


def trained_states(seed: int = 0):
    torch.manual_seed(seed)
    a, b = TinyNet(), TinyNet()
    for net in (a, b):  # give the BN buffers non-trivial values
        net.train()
        net(torch.randn(32, 1, 6, 6))
    return a.state_dict(), b.state_dict()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(150, 1, 6, 6, generator=g), torch.randint(0, 3, (150,), generator=g)


def plain_loop(start, end, inputs, targets, xs, loss_fn=F.cross_entropy):
    return plain_path(TinyNet, start, end, inputs, targets, xs, loss_fn=loss_fn, batch_size=len(targets))


def test_path_matches_a_plain_loop(data):
    start, end = trained_states()
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curve = linpath.path(model, start, end, data, grid=5, batch_size=64)
    expected = plain_loop(start, end, *data, curve.x)
    assert curve.x.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve.loss == pytest.approx([e[0] for e in expected], rel=1e-5)
    assert curve.error == pytest.approx([e[1] for e in expected], abs=1e-9)
    assert curve.examples == 150 and curve.bn == "interpolate"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model is left alone


def test_a_setting_given_whole_equals_its_keywords(data):
    """path(setting=SweepSetting(...)) is the keywords' job, field for field (a field without a
    keyword of its own reaches the engine the same way); both at once is one line."""
    start, end = trained_states()
    by_keywords = linpath.path(
        TinyNet(), start, end, data, grid=4, eval_examples=60, bn="recompute", bn_batches=2
    )
    whole = SweepSetting(grid=Grid(points=4), eval_examples=60, bn="recompute", bn_batches=2)
    given = linpath.path(TinyNet(), start, end, data, setting=whole)
    assert (
        given.loss.tolist() == by_keywords.loss.tolist()
        and given.loss_se.tolist() == by_keywords.loss_se.tolist()
    )
    with pytest.raises(LinpathError, match="give grid, bn in setting= or as keywords, not both"):
        linpath.path(TinyNet(), start, end, data, grid=4, bn="recompute", setting=whole)


def test_threads_keyword_is_applied_and_restored(data):
    """threads= sets torch's count inside the call only (runtime/threads.py); a bad count is one line."""
    seen = []

    class Probe(TinyNet):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return super().forward(x)

    start, end = trained_states()
    before = torch.get_num_threads()
    linpath.path(Probe(), start, end, data, grid=2, threads=1)
    assert set(seen) == {1} and torch.get_num_threads() == before
    with pytest.raises(LinpathError, match="threads"):
        linpath.path(Probe(), start, end, data, grid=2, threads=0)


def test_data_forms_agree(data):
    start, end = trained_states()
    base = linpath.path(TinyNet(), start, end, data, grid=3)
    dataset = TensorDataset(*data)
    for form in (dataset, DataLoader(dataset, batch_size=40, shuffle=True)):
        other = linpath.path(TinyNet(), start, end, form, grid=3, batch_size=50)
        assert other.loss == pytest.approx(base.loss, rel=1e-5) and other.error == pytest.approx(base.error)


def test_states_from_files_and_modules(data, tmp_path):
    start, end = trained_states()
    torch.save(start, tmp_path / "a.pt")
    torch.save({"model": end}, tmp_path / "b.pt")  # a wrapper, as training loops often save
    net = TinyNet()
    net.load_state_dict(end)
    from_files = linpath.path(TinyNet(), tmp_path / "a.pt", str(tmp_path / "b.pt"), data, grid=3)
    from_objects = linpath.path(TinyNet(), start, net, data, grid=3)
    assert from_files.loss.tolist() == from_objects.loss.tolist()


def test_regression_with_a_custom_loss():
    g = torch.Generator().manual_seed(2)
    inputs, targets = torch.randn(90, 5, generator=g), torch.randn(90, 2, generator=g)
    a, b = nn.Linear(5, 2), nn.Linear(5, 2)
    curve = linpath.path(
        nn.Linear(5, 2),
        a.state_dict(),
        b.state_dict(),
        (inputs, targets),
        grid=4,
        loss_fn=F.mse_loss,
        batch_size=32,
    )
    assert curve.error is None and set(curve.metrics()) == {"loss"}
    for x, loss in zip(curve.x, curve.loss):
        net = nn.Linear(5, 2)
        net.load_state_dict(interpolate_state(a.state_dict(), b.state_dict(), float(x)))
        with torch.no_grad():
            assert loss == pytest.approx(float(F.mse_loss(net(inputs), targets)), rel=1e-5)
    with_error = linpath.path(
        nn.Linear(5, 2),
        a.state_dict(),
        b.state_dict(),
        (inputs, targets),
        grid=4,
        loss_fn=F.mse_loss,
        error_fn=lambda out, y: (out - y).abs().gt(1).float().mean(),
    )
    assert with_error.error is not None and ((with_error.error >= 0) & (with_error.error <= 1)).all()
    row = dict(zip(PATH_COLUMNS, curve.rows()[0]))
    assert row["error"] == "nan" and len(curve.rows()[0]) == len(PATH_COLUMNS)


def test_metrics_plot_and_table(data, tmp_path):
    start, end = trained_states()
    curve = linpath.path(TinyNet(), start, end, data, grid=6)
    m = curve.metrics()
    assert set(m) == {"loss", "error"} and m["loss"]["rise_over_start"] == pytest.approx(
        curve.loss.max() - curve.loss[0]
    )
    fig = curve.plot(tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000 and len(fig.axes) == 2
    with open(curve.to_csv(tmp_path / "path.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == PATH_COLUMNS and [float(r["loss"]) for r in rows] == curve.loss.tolist()


def test_recompute_bn(data):
    start, end = trained_states()
    curve = linpath.path(TinyNet(), start, end, data, grid=3, bn="recompute", bn_batches=2, bn_batch_size=32)
    interpolated = linpath.path(TinyNet(), start, end, data, grid=3)
    assert curve.bn == "recompute" and torch.isfinite(torch.as_tensor(curve.loss)).all()
    assert curve.loss[1] != interpolated.loss[1]


def test_mismatched_states_name_the_key_and_shapes(data):
    start, _ = trained_states()
    other = TinyNet(classes=5).state_dict()
    with pytest.raises(LinpathError) as e:
        linpath.path(TinyNet(), start, other, data)
    message = str(e.value)
    assert (
        "'head.weight'" in message and "(3, 144)" in message and "(5, 144)" in message and "\n" not in message
    )
    missing = {k: v for k, v in start.items() if k != "norm.running_var"}
    with pytest.raises(LinpathError, match="'norm.running_var' is only in the start state"):
        linpath.path(TinyNet(), start, missing, data)
    with pytest.raises(LinpathError, match="the model and the start state"):
        linpath.path(nn.Linear(3, 3), start, start, data)


def test_eval_examples_evaluates_a_stratified_subset_with_standard_errors():
    """eval_examples=N: the values are a plain loop's on the sweep's stratified subset of N,
    with standard errors that cover the whole data's values (here within 4 SE at every x)."""
    from linpath.engine.subsets import stratified_subset

    g = torch.Generator().manual_seed(3)
    inputs, targets = torch.randn(1200, 1, 6, 6, generator=g), torch.randint(0, 3, (1200,), generator=g)
    start, end = trained_states()
    curve = linpath.path(TinyNet(), start, end, (inputs, targets), grid=4, eval_examples=300)
    chosen = stratified_subset(targets, 300)
    expected = plain_loop(start, end, inputs[chosen], targets[chosen], curve.x)
    assert curve.examples == 300
    assert curve.loss == pytest.approx([e[0] for e in expected], rel=1e-5)
    assert curve.error == pytest.approx([e[1] for e in expected], abs=1e-9)
    whole = linpath.path(TinyNet(), start, end, (inputs, targets), grid=4)
    assert (curve.loss_se > 0).all() and (curve.error_se > 0).all() and (whole.loss_se == 0).all()
    assert (abs(curve.loss - whole.loss) < 4 * curve.loss_se).all()
    assert (abs(curve.error - whole.error) < 4 * curve.error_se).all()
    with pytest.raises(LinpathError, match="eval_examples must be a positive integer"):
        linpath.path(TinyNet(), start, end, (inputs, targets), eval_examples=0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"bn": "freeze"}, "unknown BatchNorm policy"),
        ({"grid": 1}, "at least 2 points"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_arguments(data, kwargs, message):
    start, end = trained_states()
    with pytest.raises(LinpathError, match=message):
        linpath.path(TinyNet(), start, end, data, **kwargs)


def test_refuses_pickled_code(tmp_path, data):
    torch.save(TinyNet(), tmp_path / "module.pt")  # a whole pickled module, not a state dict
    start, _ = trained_states()
    with pytest.raises(LinpathError, match="refusing to load"):
        linpath.path(TinyNet(), start, tmp_path / "module.pt", data)


@pytest.mark.slow
def test_example_script(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("own_model_example", REPO / "examples" / "own_model.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    metrics = example.main(["--out", str(tmp_path), "--steps", "60", "--points", "5", "--examples", "800"])
    assert set(metrics) == {"loss", "error"}
    assert (
        (tmp_path / "path.png").is_file()
        and (tmp_path / "init.pt").is_file()
        and (tmp_path / "final.pt").is_file()
    )
    assert "rise_over_start" in capsys.readouterr().out


@pytest.mark.slow
def test_hugging_face_and_lightning_example(tmp_path):
    """examples/hf_and_lightning.py: each path's end is its trained model, evaluated here
    directly (the Lightning file read back by hand: its state_dict without the 'net.' prefix)."""
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("hf_example", REPO / "examples" / "hf_and_lightning.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    bert = example.hugging_face_path()
    assert bert.loss[-1] < bert.loss[0] - 0.2
    curve = example.lightning_path(tmp_path)
    saved = torch.load(tmp_path / "epoch=9.ckpt", weights_only=True)["state_dict"]
    net = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    net.load_state_dict({k.removeprefix("net."): v for k, v in saved.items()})
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(512, 20, generator=g), torch.randint(0, 3, (512,), generator=g)
    with torch.no_grad():
        assert curve.loss[-1] == pytest.approx(torch.nn.functional.cross_entropy(net(x), y).item(), rel=1e-5)


# --- linpath path ------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_path_in_a_run_folder(lenet_run, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "path",
            str(lenet_run.checkpoint(0, 0)),
            str(lenet_run.checkpoint(1, 0)),
            "--points",
            "3",
            "--data-root",
            str(data_root),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert "rise_over_chord" in capsys.readouterr().out
    with open(out / "paths.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == PATH_COLUMNS and len(rows) == 3 and rows[0]["examples"] == "10000"
    assert json.loads((out / "metrics.json").read_text())["model"] == "mnist_lenet_300_100"
    assert (out / "path.png").is_file() and (out / "path.pdf").is_file()
    # the API on the same states and data gives the same numbers
    from linpath.data import load

    evalset = load("mnist", data_root).eval_set("test")
    curve = linpath.path(
        build("mnist_lenet_300_100", 10),
        lenet_run.checkpoint(0, 0),
        lenet_run.checkpoint(1, 0),
        evalset,
        grid=3,
    )
    assert [float(r["loss"]) for r in rows] == pytest.approx(curve.loss.tolist(), rel=1e-6)


def test_cli_path_with_a_user_module_and_tensor_file(tmp_path, capsys):
    (tmp_path / "mynet.py").write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))\n"
    )
    torch.manual_seed(0)
    make = lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))  # noqa: E731
    torch.save(make().state_dict(), tmp_path / "a.pt")
    torch.save(make().state_dict(), tmp_path / "b.pt")
    torch.save((torch.randn(50, 4), torch.randint(0, 3, (50,))), tmp_path / "data.pt")
    code = main(
        [
            "path",
            str(tmp_path / "a.pt"),
            str(tmp_path / "b.pt"),
            "--model",
            f"{tmp_path / 'mynet.py'}:make",
            "--data",
            str(tmp_path / "data.pt"),
            "--points",
            "4",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0, capsys.readouterr().err
    with open(tmp_path / "out" / "paths.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[0]["split"] == "data"
    recorded = json.loads((tmp_path / "out" / "setting.json").read_text())["sweep_setting"]
    assert recorded == SweepSetting(grid=Grid(points=4)).as_record()  # every field, none listed by hand


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("linpath: error: ")
    return lines[0]


def test_cli_path_errors(tmp_path, capsys, lenet_run):
    torch.save(nn.Linear(4, 3).state_dict(), tmp_path / "a.pt")
    torch.save(nn.Linear(5, 3).state_dict(), tmp_path / "b.pt")
    torch.save((torch.randn(5, 4), torch.randint(0, 3, (5,))), tmp_path / "d.pt")
    line = one_line_error(
        capsys,
        [
            "path",
            str(tmp_path / "a.pt"),
            str(tmp_path / "b.pt"),
            "--model",
            "torch.nn:Identity",
            "--data",
            str(tmp_path / "d.pt"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert "'weight' has shape (3, 4) vs (3, 5)" in line
    line = one_line_error(
        capsys, ["path", str(tmp_path / "a.pt"), str(tmp_path / "a.pt"), "--data", str(tmp_path / "d.pt")]
    )
    assert "--model is needed" in line
    line = one_line_error(
        capsys,
        [
            "path",
            str(tmp_path / "a.pt"),
            str(tmp_path / "a.pt"),
            "--model",
            "nosuchmodel",
            "--data",
            str(tmp_path / "d.pt"),
        ],
    )
    assert "neither a preset or model" in line


@pytest.mark.slow
def test_curvature_along_a_path_equals_finite_differences_of_its_own_loss(tmp_path, capsys):
    """linpath.path(curvature=...) gives dL/dx and d²L/dx² = uᵀHu equal to the central differences
    of the curve itself at spacing 1e-3 (float64 model, BatchNorm statistics moving with x as the
    curve's do; tanh, so that the loss is smooth enough for differences), and `linpath path
    --curvature --curvature-at 0.5` writes both and the spectra."""
    torch.manual_seed(3)
    start, end = trained_states(3)
    data64 = (torch.randn(80, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (80,)))
    model = SmoothNet().double()
    h, x0 = 1e-3, 0.4
    fd = linpath.path(model, start, end, data64, grid=[x0 - h, x0, x0 + h])
    curve = linpath.path(model, start, end, data64, grid=[x0], curvature=True)
    slope = (fd.loss[2] - fd.loss[0]) / (2 * h)
    second = (fd.loss[2] - 2 * fd.loss[1] + fd.loss[0]) / h**2
    assert curve.quantities["slope"][0] == pytest.approx(slope, rel=1e-5)
    assert curve.quantities["curvature"][0] == pytest.approx(second, rel=1e-4)
    torch.save(start, tmp_path / "a.pt")
    torch.save(end, tmp_path / "b.pt")
    torch.save(data64, tmp_path / "d.pt")
    (tmp_path / "net.py").write_text(
        "from tests.test_api import SmoothNet\ndef make():\n    return SmoothNet().double()\n"
    )
    argv = ["path", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--model", f"{tmp_path / 'net.py'}:make"]
    argv += ["--data", str(tmp_path / "d.pt"), "--points", "3", "--curvature-at", "0.5", "--top-k", "2"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--quiet"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "Hessian at x = 0.5: top eigenvalues" in printed and ("convex" in printed)
    header = (tmp_path / "out" / "paths.csv").read_text().splitlines()[0].split(",")
    assert header[-2:] == ["slope", "curvature"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["spectra"]["0.5"]["eigenvalues"]) == 2 and metrics["curvature"]["at"] == [0.5]
