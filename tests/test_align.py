"""Weight matching for LeNet-300-100: permutations keep the function, and a permuted copy of a
network is aligned back to the network exactly (zero barrier)."""

import numpy as np
import pytest
import torch

import linpath
from linpath.engine.align import align_mlp, matching_permutations, permute_mlp
from linpath.errors import LinpathError
from linpath.models import build


def lenet(seed):
    return build("mnist_lenet_300_100", 10, seed=seed)


def random_perms(state, seed):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randperm(state[k].shape[0], generator=g).numpy()
        for k in ("fc_layers.0.bias", "fc_layers.1.bias")
    ]


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
