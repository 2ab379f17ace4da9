"""Weight matching for LeNet-300-100, VGG-16 and ResNet-20: a permutation through the spec keeps
the function (checked on the model's outputs, and a wrong spec shown to change them), and a
permuted copy of a network is aligned back to the network exactly (zero barrier)."""

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath.engine.align import align_mlp, align_states, matching_permutations, permutation_spec, permute_mlp
from linpath.engine.bn_stats import path_bn_policy
from linpath.engine.permutation import PermutationSpec, permute_state
from linpath.errors import LinpathError
from linpath.models import build, initialize
from linpath.models.cifar_resnet import CifarResNet
from linpath.models.cifar_vgg import CifarVGG


def lenet(seed):
    return build("mnist_lenet_300_100", 10, seed=seed)


def random_perms(state, seed):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randperm(state[k].shape[0], generator=g).numpy()
        for k in ("fc_layers.0.bias", "fc_layers.1.bias")
    ]


@pytest.mark.slow
def test_permuted_copy_computes_the_same():
    model = lenet(1)
    state = model.state_dict()
    permuted = permute_mlp(state, random_perms(state, 2))
    assert not torch.equal(permuted["fc_layers.0.weight"], state["fc_layers.0.weight"])
    other = lenet(3)
    other.load_state_dict(permuted)
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), atol=1e-5, rtol=1e-5)


def test_aligning_a_permuted_copy_recovers_it_exactly():
    a = lenet(1).state_dict()
    perms = random_perms(a, 5)
    b = permute_mlp(a, perms)
    aligned = align_mlp(a, b)
    assert aligned.keys() == a.keys()
    for k in a:
        assert torch.equal(aligned[k], a[k]), k
    # the permutations found undo the ones applied
    found = matching_permutations(a, b)
    for p, q in zip(perms, found):
        np.testing.assert_array_equal(p[q], np.arange(len(p)))


def test_zero_barrier_after_alignment():
    a = lenet(1).state_dict()
    b = permute_mlp(a, random_perms(a, 6))
    g = torch.Generator().manual_seed(7)
    data = (torch.randn(200, 1, 28, 28, generator=g), torch.randint(0, 10, (200,), generator=g))
    before = linpath.path(lenet(0), a, b, data, grid=5)
    after = linpath.path(lenet(0), a, linpath.align(a, b), data, grid=5)
    assert np.ptp(before.loss) > 1e-3  # the plain path between the two copies is not flat
    np.testing.assert_allclose(after.loss, after.loss[0], atol=1e-6)


def test_alignment_brings_independent_networks_closer():
    a, b = lenet(1).state_dict(), lenet(2).state_dict()
    aligned = align_mlp(a, b)

    def distance(s):
        return sum(float((s[k] - a[k]).pow(2).sum()) for k in a) ** 0.5

    assert distance(aligned) < distance(b)


def test_refuses_what_is_not_an_mlp():
    conv = build("cifar_resnet_20", 10, seed=0).state_dict()
    with pytest.raises(LinpathError, match="fully connected"):
        align_mlp(conv, conv)


def test_cli_path_align(tmp_path, capsys):
    from linpath.cli import main

    a = lenet(1).state_dict()
    torch.save(a, tmp_path / "a.pt")
    torch.save(permute_mlp(a, random_perms(a, 8)), tmp_path / "b.pt")
    g = torch.Generator().manual_seed(9)
    torch.save(
        (torch.randn(50, 1, 28, 28, generator=g), torch.randint(0, 10, (50,), generator=g)), tmp_path / "d.pt"
    )
    args = [str(tmp_path / f) for f in ("a.pt", "b.pt")]
    args += ["--model", "mnist_lenet_300_100", "--data", str(tmp_path / "d.pt"), "--points", "5", "--quiet"]
    assert main(["path", *args, "--align", "--out", str(tmp_path / "out")]) == 0
    assert "rise_over_start 0.0000" in capsys.readouterr().out


# ---- convnets: VGG-16 and ResNet-20 (permutation groups read off the built model) ----

NARROW_VGG_16 = [8, 8, "M", 16, 16, "M", 16, 16, 16, "M", 32, 32, 32, "M", 32, 32, 32]  # VGG-16's layout
CONVNETS = {
    "vgg16": lambda: CifarVGG(),
    "resnet20": lambda: CifarResNet(20, 16),
    "narrow_vgg16": lambda: CifarVGG(NARROW_VGG_16),
    "narrow_resnet20": lambda: CifarResNet(20, 4),
}


def convnet(name, seed):
    """A model in eval mode with random weights and random BatchNorm affine parameters and running
    statistics, so that a BN entry left out of a permutation changes the outputs."""
    torch.manual_seed(seed)
    model = initialize(CONVNETS[name]()).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.3, generator=g)
                m.running_mean.normal_(0.0, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model


def random_group_perms(spec, state, seed):
    rng = np.random.default_rng(seed)
    return {name: rng.permutation(n) for name, n in spec.sizes(state).items()}


def outputs_gap(name, state, other_state):
    """max |f(x) - g(x)| / max |f(x)| on a few 32x32 inputs: the two states loaded into fresh models."""
    f, g = CONVNETS[name]().eval(), CONVNETS[name]().eval()
    f.load_state_dict(state)
    g.load_state_dict(other_state)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        out_f, out_g = f(x), g(x)
    return float((out_f - out_g).abs().max() / out_f.abs().max())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
def test_a_permutation_through_the_spec_keeps_the_function(name):
    model = convnet(name, 1)
    state = model.state_dict()
    spec = permutation_spec(model, state)
    permuted = permute_state(state, spec, random_group_perms(spec, state, 2))
    moved = [k for k in state if not torch.equal(permuted[k], state[k])]
    assert len(moved) > len(state) // 2  # the permutation really moves the weights
    assert permuted.keys() == state.keys()
    assert outputs_gap(name, state, permuted) < 1e-5


@pytest.mark.parametrize(
    "name, group, dropped",
    [
        ("narrow_resnet20", "residual stream 1", "blocks.3.shortcut.1.running_var"),  # the projection's BN
        ("narrow_resnet20", "residual stream 2", "fc.weight"),  # the classifier reads the last stream
        ("narrow_resnet20", "blocks.5 inner", "blocks.5.bn1.bias"),
        ("narrow_vgg16", "layers.3", "layers.3.bn.running_mean"),
        ("narrow_vgg16", "layers.16", "fc.weight"),  # the classifier's input features are channels
    ],
)
def test_a_wrong_spec_changes_the_function(name, group, dropped):
    """The check above can fail: leave one tensor out of one group and the outputs differ."""
    model = convnet(name, 1)
    state = model.state_dict()
    spec = permutation_spec(model, state)
    assert any(key == dropped for key, _ in spec.groups[group])
    wrong = PermutationSpec(
        {**spec.groups, group: tuple(p for p in spec.groups[group] if p[0] != dropped)}, spec.unmatched
    )
    permuted = permute_state(state, wrong, random_group_perms(spec, state, 2))
    assert outputs_gap(name, state, permuted) > 1e-3


def test_resnet20_groups_are_the_three_stages_and_each_blocks_inside():
    """He et al.'s ResNet-20: three residual streams (16, 32, 64 channels) and nine blocks."""
    model = convnet("resnet20", 1)
    sizes = permutation_spec(model, model.state_dict()).sizes(model.state_dict())
    assert sizes == {
        "residual stream 0": 16,
        "residual stream 1": 32,
        "residual stream 2": 64,
        **{f"blocks.{i} inner": (16, 32, 64)[i // 3] for i in range(9)},
    }


def test_vgg16_has_one_group_per_conv():
    model = convnet("vgg16", 1)
    sizes = permutation_spec(model, model.state_dict()).sizes(model.state_dict())
    assert list(sizes.values()) == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


@pytest.mark.parametrize("name", ["narrow_vgg16", "resnet20"])
def test_aligning_a_permuted_convnet_recovers_it_exactly(name):
    """Weight matching undoes a random permutation: the aligned copy is the original, bit for
    bit, BatchNorm statistics and the integer batch counter included (so the barrier is zero)."""
    model = convnet(name, 1)
    a = model.state_dict()
    spec = permutation_spec(model, a)
    b = permute_state(a, spec, random_group_perms(spec, a, 3))
    assert not torch.equal(b["fc.weight"], a["fc.weight"])
    aligned = linpath.align(a, b, model)
    assert aligned.keys() == a.keys()
    for k in a:
        assert torch.equal(aligned[k], a[k]), k


def test_alignment_brings_independent_convnets_closer():
    model = convnet("narrow_resnet20", 1)
    a, b = model.state_dict(), convnet("narrow_resnet20", 2).state_dict()
    aligned = align_states(a, b, model)

    def distance(s):
        return sum(float((s[k] - a[k]).pow(2).sum()) for k, _ in model.named_parameters()) ** 0.5

    assert distance(aligned) < 0.97 * distance(b)
    assert outputs_gap("narrow_resnet20", b, aligned) < 1e-5  # the same function as b


def test_a_model_without_builder_is_refused_in_one_line():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    with pytest.raises(LinpathError, match="weight matching does not know Sequential"):
        linpath.align(model.state_dict(), model.state_dict(), model)


def test_bn_policy_of_an_aligned_path():
    resnet, mlp = convnet("narrow_resnet20", 0), lenet(0)
    assert path_bn_policy(None, resnet, aligned=True) == "recompute"
    assert path_bn_policy(None, resnet, aligned=False) == "interpolate"
    assert path_bn_policy(None, mlp, aligned=True) == "interpolate"
    assert path_bn_policy("interpolate", resnet, aligned=True) == "interpolate"
    with pytest.raises(LinpathError, match="unknown BatchNorm policy"):
        path_bn_policy("mixed", resnet, aligned=True)


# ---- the command line: linpath align, linpath path --align on a convnet ----


def resnet_pair(tmp_path):
    model = convnet("resnet20", 1)
    a = model.state_dict()
    spec = permutation_spec(model, a)
    torch.save(a, tmp_path / "a.pt")
    torch.save(permute_state(a, spec, random_group_perms(spec, a, 4)), tmp_path / "b.pt")
    torch.save(convnet("resnet20", 5).state_dict(), tmp_path / "c.pt")
    return model


@pytest.mark.slow
def test_cli_align_writes_what_the_api_gives(tmp_path, capsys):
    from linpath.cli import main

    resnet_pair(tmp_path)
    a, c, out = (str(tmp_path / f) for f in ("a.pt", "c.pt", "c_aligned.pt"))
    assert main(["align", a, c, "--model", "cifar_resnet_20", "--out", out]) == 0
    assert "after alignment" in capsys.readouterr().out
    written = torch.load(out, weights_only=True)
    fresh = build("cifar_resnet_20", 10)
    fresh.load_state_dict(written)  # strict: every key of the model, nothing else
    expected = linpath.align(a, c, build("cifar_resnet_20", 10))
    assert written.keys() == expected.keys()
    for k in expected:
        assert torch.equal(written[k], expected[k]), k


def test_cli_align_refuses_to_overwrite(tmp_path, capsys):
    from linpath.cli import main

    resnet_pair(tmp_path)
    a, b, c = (str(tmp_path / f) for f in ("a.pt", "b.pt", "c.pt"))
    before = (tmp_path / "c.pt").read_bytes()
    for out, extra in ((c, []), (b, ["--force"]), (a, [])):  # c exists; a and b are the inputs
        assert main(["align", a, b, "--model", "cifar_resnet_20", "--out", out, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("linpath: error:"), err
    assert (tmp_path / "c.pt").read_bytes() == before
    assert main(["align", a, b, "--model", "cifar_resnet_20", "--out", str(tmp_path / "d.pt")]) == 0
    recovered, original = torch.load(tmp_path / "d.pt", weights_only=True), torch.load(a, weights_only=True)
    assert recovered.keys() == original.keys()
    assert all(torch.equal(v, original[k]) for k, v in recovered.items())  # b was a's permuted copy
    assert (
        main(["align", a, b, "--model", "cifar_resnet_20", "--out", str(tmp_path / "d.pt"), "--force"]) == 0
    )


def test_cli_align_model_mismatch_is_one_line(tmp_path, capsys):
    from linpath.cli import main

    resnet_pair(tmp_path)
    args = [str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "x.pt")]
    assert main(["align", *args, "--model", "cifar_vgg_16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the model and state a" in err, err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_cli_path_align_on_a_resnet_recomputes_batchnorm(tmp_path, capsys):
    import json

    from linpath.cli import main

    resnet_pair(tmp_path)
    g = torch.Generator().manual_seed(6)
    data = (torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))
    torch.save(data, tmp_path / "d.pt")
    args = [str(tmp_path / f) for f in ("a.pt", "b.pt")]
    args += ["--model", "cifar_resnet_20", "--data", str(tmp_path / "d.pt"), "--points", "3", "--quiet"]
    args += ["--bn-data", str(tmp_path / "d.pt")]
    assert main(["path", *args, "--align", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "BatchNorm policy: recompute" in printed
    assert "rise_over_start 0.0000" in printed
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["bn"] == "recompute"
