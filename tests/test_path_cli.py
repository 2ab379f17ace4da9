"""`linpath path` with the sweep's setting options, against hand computations: the grid's x,
the stratified subset evaluated by the plain loop of tests/oracle.py on inputs normalized by
hand, standard errors, BatchNorm statistics re-estimated from MNIST training batches (not the
evaluation inputs), the setting recorded and printed, progress, and one-line errors."""

import csv
import json

import pytest
import torch
from torch import nn

import linpath
from linpath.api.resolve import describe_file
from linpath.cli import main
from linpath.engine.subsets import stratified_subset
from linpath.models import build
from linpath.sweep.grids import parse_grid
from linpath.sweep.setting import SweepSetting
from tests.oracle import plain_path
from tests.test_api import one_line_error

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # OpenLTH's, written out here on purpose


def hand_normalized(split) -> torch.Tensor:
    return (split.images.float() / 255 - MNIST_MEAN) / MNIST_STD


def rows_of(out) -> list[dict]:
    with open(out / "paths.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_grid_subset_setting_and_normalization(lenet_run, mnist, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    a, b = lenet_run.checkpoint(0, 0), lenet_run.checkpoint(1, 0)
    argv = ["path", str(a), str(b), "--grid", "dense-end:5", "--eval-examples", "500"]
    assert main([*argv, "--data-root", str(data_root), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    rows = rows_of(out)
    want_xs = parse_grid("dense-end:5").xs()
    assert [float(r["x"]) for r in rows] == pytest.approx(want_xs, abs=0)
    assert {r["examples"] for r in rows} == {"500"}
    for r in rows:  # stratified standard errors, as the sweep's
        assert 0 < float(r["loss_se"]) < 1 and 0 < float(r["error_se"]) < 1
    # the same 500 images, normalized by hand, through the plain loop
    index = stratified_subset(mnist.test.labels, 500)
    inputs, labels = hand_normalized(mnist.test)[index], mnist.test.labels[index]
    states = [torch.load(f, weights_only=True) for f in (a, b)]
    ref = plain_path(lambda: build("mnist_lenet_300_100", 10), *states, inputs, labels, want_xs)
    assert [float(r["loss"]) for r in rows] == pytest.approx([loss for loss, _ in ref], abs=1e-5)
    assert [float(r["error"]) for r in rows] == pytest.approx([err for _, err in ref], abs=1e-9)
    # the setting: the sweep's key for the same options, recorded and printed
    key = SweepSetting(grid=parse_grid("dense-end:5"), eval_examples=500).key
    recorded = json.loads((out / "setting.json").read_text())
    assert recorded["setting"] == key == json.loads((out / "metrics.json").read_text())["setting"]
    assert recorded["eval_examples"] == 500 and recorded["population"] == 10000
    assert f"setting: {key}" in printed.out
    assert "0.1307" in recorded["normalization"] and "0.3081" in recorded["normalization"]
    assert "normalization: mnist: x/255, then (x - 0.1307) / 0.3081" in printed.out
    assert "path: 5/5 points" in printed.err  # progress: stderr is not a terminal here


def test_help_states_the_normalization(capsys):
    with pytest.raises(SystemExit):
        main(["path", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "mnist: x/255, then (x - 0.1307) / 0.3081" in text and "--bn-data" in text


class BNNet(nn.Module):
    """A user's MNIST convnet with BatchNorm (its statistics decide the loss)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, stride=3)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).flatten(1))


@pytest.mark.slow
def test_bn_recompute_from_named_training_batches(mnist, data_root, tmp_path, capsys):
    torch.manual_seed(0)
    states = [BNNet().state_dict() for _ in range(2)]
    for name, state in zip("ab", states):
        torch.save(state, tmp_path / f"{name}.pt")
    out, xs = tmp_path / "out", [0.0, 0.5, 1.0]
    argv = ["path", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--model", f"{__file__}:BNNet"]
    argv += ["--data", "mnist", "--bn", "recompute", "--bn-batches", "2", "--points", "3"]
    argv += ["--eval-examples", "300", "--data-root", str(data_root), "--out", str(out), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    got = [float(r["loss"]) for r in rows_of(out)]
    # by hand: the first two training batches of MNIST (seed 0, batch 128, no augmentation)
    batches = mnist.train_batches(0, 128, augment=False)
    train = [next(batches)[0] for _ in range(2)]
    index = stratified_subset(mnist.test.labels, 300)
    inputs, labels = hand_normalized(mnist.test)[index], mnist.test.labels[index]
    ref = plain_path(BNNet, *states, inputs, labels, xs, "recompute", train)
    assert got == pytest.approx([loss for loss, _ in ref], abs=1e-5)
    # re-estimating from the evaluation inputs instead (the API's default) gives other numbers
    on_eval = linpath.path(BNNet(), *states, (inputs, labels), grid=xs, bn="recompute", bn_batches=2)
    assert max(abs(g - e) for g, e in zip(got, on_eval.loss)) > 1e-4  # 10x the tolerance above
    recorded = json.loads((out / "setting.json").read_text())
    assert recorded["bn_data"] == "mnist training split, 2 batches of 128 (seed 0)"
    assert recorded["setting"] == "test-recompute2-uniform3-fp32-n300"


def test_bad_setting_values_give_one_line(tmp_path, capsys):
    torch.save(nn.Linear(4, 3).state_dict(), tmp_path / "a.pt")
    torch.save((torch.randn(20, 4), torch.randint(0, 3, (20,))), tmp_path / "d.pt")
    common = ["path", str(tmp_path / "a.pt"), str(tmp_path / "a.pt"), "--model", "torch.nn:Identity"]
    common += ["--data", str(tmp_path / "d.pt"), "--out", str(tmp_path / "o")]
    assert "unknown grid 'zigzag'" in one_line_error(capsys, [*common, "--grid", "zigzag:5"])
    assert "--eval-examples must be a positive integer" in one_line_error(
        capsys, [*common, "--eval-examples", "-3"]
    )
    assert "--bn-batches must be a positive integer" in one_line_error(capsys, [*common, "--bn-batches", "0"])
    assert "--bn recompute needs --bn-data" in one_line_error(capsys, [*common, "--bn", "recompute"])
    assert "--bn-data 'nowhere.pt' is neither" in one_line_error(
        capsys, [*common, "--bn", "recompute", "--bn-data", "nowhere.pt"]
    )


def test_the_title_tells_the_files_apart(tmp_path, lenet_run):
    a, b = lenet_run.checkpoint(0, 0), lenet_run.checkpoint(1, 0)
    run = lenet_run.root.name
    assert describe_file(a, b) == f"{run}/replicate-0/checkpoints/iter-0000000.pt"
    (tmp_path / "x").mkdir(), (tmp_path / "y").mkdir()
    assert describe_file(tmp_path / "x" / "final.pt", tmp_path / "y" / "final.pt") == "x/final.pt"
    deep_a, deep_b = tmp_path / "s1" / "ckpt" / "final.pt", tmp_path / "s2" / "ckpt" / "final.pt"
    assert describe_file(deep_a, deep_b) == "s1/ckpt/final.pt"
