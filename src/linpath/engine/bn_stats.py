"""BatchNorm along a path: the policies, and re-estimating running statistics at a point.

  interpolate  the running statistics are interpolated with the weights, exactly what loading
               the mixed state dict gives (the paper's setup);
  recompute    at each point the running statistics are reset and re-estimated as a cumulative
               average over N training batches in train mode, then the network is evaluated.
The interpolated statistics are those of neither network (mid-path activations typically have
a smaller variance, "variance collapse"), so `interpolate` overstates barriers that
`recompute` does not; see docs/engine.md.
"""

from __future__ import annotations

import torch
from torch import nn

from linpath.engine.choices import BN_POLICIES, DEFAULT_BN_BATCHES, check_bn_policy
from linpath.errors import LinpathError
from linpath.runtime.device import autocast

__all__ = [
    "BN_POLICIES",
    "DEFAULT_BN_BATCHES",
    "check_bn_policy",
    "bn_modules",
    "path_bn_policy",
    "recompute_bn_statistics",
]


def bn_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def path_bn_policy(bn: str | None, model: nn.Module, aligned: bool) -> str:
    """The policy of a path: `bn` when given; else `recompute` on a path between aligned
    replicates of a model with BatchNorm, as the weight-matching literature evaluates them
    (Ainsworth et al. 2023; Jordan et al. 2023): the mixed statistics of two networks match
    neither's activations, so `interpolate` would show a barrier that is not the weights'.
    Otherwise `interpolate`, the paper's."""
    if bn is not None:
        return check_bn_policy(bn)
    return "recompute" if aligned and bn_modules(model) else "interpolate"


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches, precision: str = "fp32") -> None:
    """Reset BatchNorm running statistics and re-estimate them as a cumulative average over
    `batches` (a list of input tensors) in train mode; leaves the model in eval mode."""
    bns = bn_modules(model)
    if not bns:
        return
    if not batches:
        raise LinpathError("the recompute BatchNorm policy needs training batches (--bn-batches > 0)")
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    try:
        for inputs in batches:
            with autocast(inputs.device, precision):
                model(inputs)
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
        model.eval()
