"""Models by name (OpenLTH's names), with the paper's initializers.

A model class may name its `linear_stem`: the first layer, whose input is the network's input
(after parameter-free reshaping) and whose output is linear in its own parameters. The sweep
engine exploits it (see engine/evaluator.py).
"""

from __future__ import annotations

import torch
from torch import nn

from linpath.errors import LinpathError
from linpath.models.cifar_resnet import CifarResNet
from linpath.models.cifar_vgg import CifarVGG
from linpath.models.imagenet_resnet import ImageNetResNet
from linpath.models.lenet import LeNet

# name -> constructor(num_classes) -> nn.Module
MODELS = {
    "mnist_lenet_300_100": lambda num_classes: LeNet([300, 100], num_classes=num_classes),
    "cifar_resnet_20": lambda num_classes: CifarResNet(20, 16, num_classes=num_classes),
    "cifar_vgg_16": lambda num_classes: CifarVGG(num_classes=num_classes),
    "imagenet_resnet_50": lambda num_classes: ImageNetResNet((3, 4, 6, 3), num_classes=num_classes),
}


def initialize(model: nn.Module, init: str = "kaiming_normal", bn_init: str = "uniform") -> nn.Module:
    """OpenLTH's initializers: Kaiming-normal conv/linear weights (biases keep PyTorch's
    default), BatchNorm weight ~ U[0, 1) (or 1) and bias 0."""
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
    if seed is None:
        return initialize(MODELS[name](num_classes), init, bn_init)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return initialize(MODELS[name](num_classes), init, bn_init)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
