"""Counting a model's multiply-adds by layer, from one example's forward pass."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, int]:
    """Multiply-adds of each Linear and convolution for the examples in `example`."""
    macs: dict[nn.Module, int] = {}

    def count(module, inputs, output):
        if isinstance(module, nn.Linear):
            macs[module] = output.numel() * module.in_features
        elif isinstance(module, nn.modules.conv._ConvNd):
            macs[module] = output.numel() * module.weight[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        model.eval()
        model(example)
    finally:
        for h in hooks:
            h.remove()
    return macs


@torch.no_grad()
def stem_profile(model: nn.Module, example: torch.Tensor, stem: nn.Module) -> tuple[float, int]:
    """(share of the multiply-adds in `stem`, stem output elements per example)."""
    numel = [0]
    hook = stem.register_forward_hook(lambda module, inputs, output: numel.__setitem__(0, output[0].numel()))
    try:
        macs = count_macs(model, example)
    finally:
        hook.remove()
    total = sum(macs.values())
    in_stem = sum(v for m, v in macs.items() if any(m is s for s in stem.modules()))
    return (in_stem / total if total else 0.0), numel[0]
