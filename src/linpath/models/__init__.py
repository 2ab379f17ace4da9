"""Models by name (OpenLTH's names), with the paper's initializers.

A model class may name its `linear_stem`: the first layer, whose input is the network's input
(after parameter-free reshaping) and whose output is linear in its own parameters. The sweep
engine exploits it (see engine/evaluator.py).

This registry imports torch only when a model is built: the spec checks model names against it,
and the commands that only read names (`linpath presets`, `--help`) should not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from linpath.errors import LinpathError

if TYPE_CHECKING:
    from torch import nn


def _lenet_300_100(num_classes: int) -> nn.Module:
    from linpath.models.lenet import LeNet

    return LeNet([300, 100], num_classes=num_classes)


def _cifar_resnet_20(num_classes: int) -> nn.Module:
    from linpath.models.cifar_resnet import CifarResNet

    return CifarResNet(20, 16, num_classes=num_classes)


def _cifar_vgg_16(num_classes: int) -> nn.Module:
    from linpath.models.cifar_vgg import CifarVGG

    return CifarVGG(num_classes=num_classes)


def _imagenet_resnet_50(num_classes: int) -> nn.Module:
    from linpath.models.imagenet_resnet import ImageNetResNet

    return ImageNetResNet((3, 4, 6, 3), num_classes=num_classes)


# name -> constructor(num_classes) -> nn.Module
MODELS = {
    "mnist_lenet_300_100": _lenet_300_100,
    "cifar_resnet_20": _cifar_resnet_20,
    "cifar_vgg_16": _cifar_vgg_16,
    "imagenet_resnet_50": _imagenet_resnet_50,
}


def initialize(model: nn.Module, init: str = "kaiming_normal", bn_init: str = "uniform") -> nn.Module:
    """OpenLTH's initializers: Kaiming-normal conv/linear weights (biases keep PyTorch's
    default), BatchNorm weight ~ U[0, 1) (or 1) and bias 0."""
    import torch
    from torch import nn

    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if init != "kaiming_normal":
                raise LinpathError(f"unknown init {init!r}")
            nn.init.kaiming_normal_(module.weight)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                if bn_init == "uniform":
                    module.weight.copy_(torch.rand(module.weight.shape))
                else:
                    module.weight.fill_(1.0)
                module.bias.zero_()
    return model


def build(
    name: str,
    num_classes: int,
    seed: int | None = None,
    init: str = "kaiming_normal",
    bn_init: str = "uniform",
) -> nn.Module:
    """Build and initialize a model; with `seed`, the init is a pure function of it."""
    if name not in MODELS:
        raise LinpathError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    import torch

    if seed is None:
        return initialize(MODELS[name](num_classes), init, bn_init)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return initialize(MODELS[name](num_classes), init, bn_init)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def has_batchnorm(name: str, num_classes: int = 10) -> bool:
    """Whether the named model has BatchNorm layers (built on the meta device: no memory, no
    initialization; for the figures' titles, which name the BatchNorm policy only where it applies)."""
    if name not in MODELS:
        raise LinpathError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    import torch
    from torch import nn

    with torch.device("meta"):
        model = MODELS[name](num_classes)
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
