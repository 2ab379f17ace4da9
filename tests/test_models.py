"""The four models: parameter counts pinned to the paper's networks, OpenLTH's module names,
the linear stem, and channels-last giving the same function."""

import pytest
import torch

from linpath.models import MODELS, build, count_parameters

COUNTS = [
    ("mnist_lenet_300_100", 10, 266_610),
    ("cifar_resnet_20", 10, 272_474),
    ("cifar_vgg_16", 10, 14_728_266),
    ("imagenet_resnet_50", 1000, 25_557_032),
]


@pytest.mark.parametrize("name,classes,count", COUNTS)
def test_parameter_counts(name, classes, count):
    assert count_parameters(MODELS[name](classes)) == count


def test_resnet50_classes_follow_the_data():
    model = MODELS["imagenet_resnet_50"](10)
    assert model.fc.out_features == 10 and count_parameters(model) == 25_557_032 - 990 * 2048 - 990


def test_openlth_module_names():
    resnet = dict(MODELS["cifar_resnet_20"](10).named_parameters())
    for key in [
        "conv.weight",
        "bn.weight",
        "blocks.0.conv1.weight",
        "blocks.0.bn1.bias",
        "blocks.0.conv2.weight",
        "blocks.3.shortcut.0.weight",
        "blocks.3.shortcut.1.weight",
        "blocks.8.bn2.weight",
        "fc.weight",
    ]:
        assert key in resnet, key
    assert "blocks.0.shortcut.0.weight" not in resnet and "conv.bias" not in resnet
    vgg = dict(MODELS["cifar_vgg_16"](10).named_parameters())
    assert {"layers.0.conv.weight", "layers.0.conv.bias", "layers.0.bn.weight", "fc.weight"} <= set(vgg)
    assert sum(k.endswith("conv.weight") for k in vgg) == 13


@pytest.mark.parametrize(
    "name,shape",
    [
        ("cifar_resnet_20", (2, 3, 32, 32)),
        ("cifar_vgg_16", (2, 3, 32, 32)),
        ("imagenet_resnet_50", (2, 3, 64, 64)),
    ],
)
def test_forward_shape_stem_and_init(name, shape):
    model = build(name, 10, seed=0).eval()
    assert model.get_submodule(model.linear_stem).in_channels == 3
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(
        0 <= float(m.weight.detach().min()) and float(m.weight.detach().max()) < 1 and not m.bias.any()
        for m in bn
    )
    x = torch.randn(shape)
    with torch.no_grad():
        out = model(x)
        out_cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 10)
    torch.testing.assert_close(out, out_cl, rtol=1e-4, atol=1e-4)


def test_init_is_a_function_of_the_seed():
    a, b, c = (build("cifar_resnet_20", 10, seed=s).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv.weight"], c["conv.weight"])
