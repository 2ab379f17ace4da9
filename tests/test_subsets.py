"""Parameter subsets (--params, linpath.path(params=...)) and the per-layer mode.

The engine's subset paths are compared with the plain-loop oracle run on state dicts built by
hand from hand-written key lists: selected tensors (1 - x)·a + x·b, the others at the hold
endpoint. Two small networks: an MLP whose stem is mixed (LeNet-like) and a BatchNorm CNN
whose stem is a convolution followed by BatchNorm (folded), with the stem forced on and off.
"""

import csv
import shutil

import pytest
import torch
from torch import nn

import linpath
from linpath.cli import main
from linpath.data.source import EvalSet
from linpath.engine.evaluator import Layout, PathEvaluator
from linpath.engine.params import layer_specs, restrict, select
from linpath.errors import LinpathError
from linpath.models import build
from linpath.sweep.grids import Grid
from linpath.sweep.setting import SweepSetting, params_slug, parse_key
from tests.oracle import plain_path
from tests.test_cli import one_line_error

XS = [0.0, 0.3, 0.75, 1.0]


class TinyMLP(nn.Module):
    linear_stem = "fc1"

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(12, 16), nn.Linear(16, 8), nn.Linear(8, 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1))))))


class TinyCNN(nn.Module):
    linear_stem = "conv1"

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1, bias=True), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


MLP_KEYS = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
BN1 = ["bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"]
BN2 = [k.replace("bn1", "bn2") for k in BN1]

# spec -> the keys it selects, written by hand
MLP_SPECS = {
    "fc1.*": {"fc1.weight", "fc1.bias"},  # the stem only
    "fc2.*,fc3.*": {"fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"},  # all but the stem
    "biases": {"fc1.bias", "fc2.bias", "fc3.bias"},
    "weights": {"fc1.weight", "fc2.weight", "fc3.weight"},
    "layer:fc2": {"fc2.weight", "fc2.bias"},
    "fc?.bias,fc3.weight": {"fc1.bias", "fc2.bias", "fc3.bias", "fc3.weight"},
}
CNN_SPECS = {
    "layer:conv1,layer:bn1": {"conv1.weight", "conv1.bias", *BN1},  # the stem (and its BN) only
    "conv2.*,bn2.*,fc.*": {"conv2.weight", *BN2, "fc.weight", "fc.bias"},  # all but the stem
    "bn": {*BN1, *BN2},
    "biases": {"conv1.bias", "fc.bias"},
    "weights": {"conv1.weight", "conv2.weight", "fc.weight"},
}


def random_state(make, seed):
    torch.manual_seed(seed)
    model = make()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.num_batches_tracked.fill_(seed)
    return {k: v.clone() for k, v in model.state_dict().items()}


def hand_made(start, end, keys, hold):
    """Endpoints whose plain mix is the subset path: every key outside `keys` at `hold`'s value."""
    held = end if hold == "end" else start
    return (
        {k: v if k in keys else held[k] for k, v in start.items()},
        {k: v if k in keys else held[k] for k, v in end.items()},
    )


CASES = {"mlp": (TinyMLP, (1, 3, 4), MLP_SPECS), "cnn": (TinyCNN, (3, 6, 6), CNN_SPECS)}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    make, shape, specs = CASES[request.param]
    g = torch.Generator().manual_seed(7)
    inputs, labels = torch.randn(90, *shape, generator=g), torch.randint(0, 10, (90,), generator=g)
    bn_batches = [torch.randn(30, *shape, generator=g) for _ in range(2)]
    return make, inputs, labels, bn_batches, random_state(make, 1), random_state(make, 2), specs


def spec_cases():
    for name, (_, _, specs) in CASES.items():
        for spec in specs:
            yield pytest.param(name, spec, id=f"{name}-{spec}")


@pytest.mark.parametrize("hold", ["end", "start"])
@pytest.mark.parametrize("use_stem", [False, True])
@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
def test_subset_path_equals_hand_made_state_dicts(case, bn, use_stem, hold):
    make, inputs, labels, bn_batches, start, end, specs = case
    if bn == "recompute" and (make is TinyMLP or hold == "start"):
        pytest.skip(
            "no BatchNorm to recompute" if make is TinyMLP else "hold start: covered under interpolate"
        )
    engine = PathEvaluator(make(), EvalSet(inputs, labels), batch_size=40, layout=Layout(use_stem=use_stem))
    assert engine.uses_stem == use_stem
    if make is TinyCNN:
        assert engine.folds_bn  # conv2 -> bn2 is folded (conv1 -> bn1 too when the stem is not mixed)
    for spec, keys in specs.items():
        a, b = restrict(start, end, select(spec, make()), hold)
        got = engine.evaluate_path(a, b, XS, bn=bn, bn_batches=bn_batches)
        want = plain_path(make, *hand_made(start, end, keys, hold), inputs, labels, XS, bn, bn_batches)
        for x, res, (loss, error) in zip(XS, got, want):
            assert res.loss == pytest.approx(loss, abs=1e-5), (spec, x)
            assert res.error == pytest.approx(error, abs=1e-9), (spec, x)


def test_a_subset_moves_the_path(case):
    """The subset path differs from the full path inside (0, 1): the oracle comparison above
    would pass for a subset that is silently ignored only if the two coincided."""
    make, inputs, labels, _, start, end, specs = case
    spec = next(iter(specs))
    full = plain_path(make, start, end, inputs, labels, [0.5])[0][0]
    subset = plain_path(make, *hand_made(start, end, specs[spec], "end"), inputs, labels, [0.5])[0][0]
    assert abs(full - subset) > 1e-3


@pytest.mark.parametrize("hold", ["end", "start"])
def test_api_path_with_params(case, hold):
    make, inputs, labels, _, start, end, specs = case
    spec, keys = list(specs.items())[1]
    curve = linpath.path(make(), start, end, (inputs, labels), grid=XS, params=spec, hold=hold)
    want = plain_path(make, *hand_made(start, end, keys, hold), inputs, labels, XS)
    assert curve.loss.tolist() == pytest.approx([loss for loss, _ in want], abs=1e-5)
    assert curve.error.tolist() == pytest.approx([error for _, error in want], abs=1e-9)


def test_selector_key_sets():
    for spec, keys in MLP_SPECS.items():
        assert select(spec, TinyMLP()) == keys, spec
    for spec, keys in CNN_SPECS.items():
        assert select(spec, TinyCNN()) == keys, spec
    lenet = build("mnist_lenet_300_100", 10, seed=0)
    # fnmatch: '*' matches dots too
    assert select("fc*.bias", lenet) == {"fc.bias", "fc_layers.0.bias", "fc_layers.1.bias"}
    assert select("fc.*", lenet) == {"fc.weight", "fc.bias"}
    assert select("fc_layers.*.bias", lenet) == {"fc_layers.0.bias", "fc_layers.1.bias"}
    assert select("layer:fc_layers", lenet) == {
        "fc_layers.0.weight",
        "fc_layers.0.bias",
        "fc_layers.1.weight",
        "fc_layers.1.bias",
    }


def test_layers_of_the_per_layer_mode():
    assert layer_specs(TinyMLP()) == {"fc1": "layer:fc1", "fc2": "layer:fc2", "fc3": "layer:fc3"}
    assert layer_specs(TinyCNN()) == {
        "conv1": "layer:conv1,layer:bn1",
        "conv2": "layer:conv2,layer:bn2",
        "fc": "layer:fc",
    }
    assert list(layer_specs(build("mnist_lenet_300_100", 10, seed=0))) == ["fc_layers.0", "fc_layers.1", "fc"]


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            "fc9.*",
            "parameter subset 'fc9.*': 'fc9.*' selects no tensor of the model (its layers: fc1, fc2, fc3)",
        ),
        ("fc1.*,bn", "'bn' selects no tensor"),
        ("fc1.*,,fc2.*", "has an empty term"),
        ("", "has an empty term"),
        ("layer:", "'layer:' needs a module name"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(LinpathError) as e:
        select(spec, TinyMLP())
    assert message in str(e.value)


def test_setting_keys():
    assert SweepSetting().key == "test-interpolate-uniform100-fp32"  # unchanged by this feature
    keys = {
        SweepSetting().key,
        SweepSetting(params="fc1.*").key,
        SweepSetting(params="fc2.*").key,
        SweepSetting(params="fc1.*", hold="start").key,
        SweepSetting(params="layer:fc1").key,
        SweepSetting(params="fc_.bias").key,
        SweepSetting(params="fc*.bias").key,
    }
    assert len(keys) == 7
    assert (
        SweepSetting(params="layer:fc1").key == "test-interpolate-uniform100-fp32-params[layer=fc1]-holdend"
    )
    assert SweepSetting(params="weights", eval_examples=50).key == (
        "test-interpolate-uniform100-fp32-n50-params[weights]-holdend"
    )
    assert (
        params_slug("fc*.bias").startswith("fc_.bias-")
        and len(params_slug("fc*.bias")) == len("fc_.bias-") + 8
    )
    for key in keys:  # the item files of every such setting are checked against its grid
        assert parse_key(key).grid == SweepSetting().grid, key
    with pytest.raises(LinpathError, match="--hold only applies with --params"):
        SweepSetting(hold="start")
    with pytest.raises(LinpathError, match="unknown hold"):
        SweepSetting(params="fc1.*", hold="middle")


def test_bad_spec_on_the_command_line_is_one_line(capsys, tmp_path):
    line = one_line_error(capsys, ["sweep", str(tmp_path), "--params", "fc1.*,,"])
    assert "'fc1.*,,'" in line and "empty term" in line
    line = one_line_error(capsys, ["sweep", str(tmp_path), "--hold", "start"])
    assert "--hold only applies with --params" in line


def _copy(run, tmp_path):
    target = tmp_path / run.root.name
    shutil.copytree(
        run.root, target, ignore=shutil.ignore_patterns("sweep", "results", "paths.csv", ".*lock")
    )
    return target


def test_sweep_with_params_and_per_layer(capsys, small_run, data_root, tmp_path, mnist):
    """On a real run: a spec selecting nothing is one line naming it; --params writes its own
    setting whose points are the hand-made path's; --per-layer writes one setting per layer and
    the per-layer table."""
    run = _copy(small_run, tmp_path)
    common = ["--data-root", str(data_root), "--from-steps", "0", "--points", "3", "--quiet"]
    line = one_line_error(capsys, ["sweep", str(run), "--params", "fc9.*", *common])
    assert "'fc9.*' selects no tensor" in line and "fc_layers.0, fc_layers.1, fc" in line

    assert main(["sweep", str(run), "--params", "fc.*", *common]) == 0
    key = SweepSetting(grid=Grid(points=3), params="fc.*").key
    assert key.startswith("test-interpolate-uniform3-fp32-params[fc._-")
    with open(run / "sweep" / key / "r1-t0000000.csv") as f:
        rows = list(csv.DictReader(f))
    last = max(int(p.stem.split("-")[1]) for p in (run / "replicate-1" / "checkpoints").glob("iter-*.pt"))
    a = torch.load(run / "replicate-1/checkpoints/iter-0000000.pt", weights_only=True)
    b = torch.load(run / f"replicate-1/checkpoints/iter-{last:07d}.pt", weights_only=True)
    evalset = mnist.eval_set("test", torch.device("cpu"))
    make = lambda: build("mnist_lenet_300_100", 10, seed=0)  # noqa: E731
    want = plain_path(
        make,
        *hand_made(a, b, {"fc.weight", "fc.bias"}, "end"),
        evalset.inputs,
        evalset.labels,
        [0, 0.5, 1],
        batch_size=1000,
    )
    assert [float(r["loss"]) for r in rows] == pytest.approx([loss for loss, _ in want], abs=1e-5)

    assert main(["sweep", str(run), "--per-layer", *common]) == 0
    folder = run / "layers" / "test-interpolate-uniform3-fp32-holdend"
    with open(folder / "layers.csv") as f:
        table = list(csv.DictReader(f))
    assert {r["layer"] for r in table} == {"fc_layers.0", "fc_layers.1", "fc"}
    assert len(table) == 3 * 3 and {r["replicates"] for r in table} == {"2"}
    assert (folder / "figures" / "layers-t0.png").stat().st_size > 0
    assert main(["report", str(run)]) == 0  # every setting, the subsets' included, reports
