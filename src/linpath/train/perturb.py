"""A perturbation of a network's state scaled per tensor, for instability to perturbations.

Altıntaş, Kwok et al. (ICML 2025, "The Butterfly Effect") perturb θ_t by a tiny amount and
train it on the same data order as the unperturbed network; the barrier between the two then
measures how far training amplifies the perturbation, without SGD noise (Frankle et al. 2020's
children differ by their data order instead). Here each trained parameter tensor W gets
    W + EPS · ‖W‖ · g / ‖g‖,   g ~ N(0, I) of W's shape (float64, then W's dtype),
so the relative change of every tensor is exactly EPS (in its Frobenius norm) whatever its
scale; a tensor of norm 0 (biases initialized to zero) is left alone. BatchNorm's running
statistics and integer buffers are not parameters and are not perturbed. g is drawn on the CPU
from a generator seeded by `seed` and the tensor's name, so a perturbation is the same on every
device and does not depend on which other tensors are perturbed. EPS = 0 returns the state
itself, bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from linpath.errors import LinpathError
from linpath.runtime.seeds import derived_seed


def check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise LinpathError(f"--perturb must be a finite number of at least 0 (a relative size), got {eps!r}")
    return float(eps)


def parameter_names(model: nn.Module) -> list[str]:
    """The state-dict keys of the model's trained parameters (what a perturbation moves)."""
    return [name for name, _ in model.named_parameters()]


def perturb_state(state: dict, names: Iterable[str], eps: float, seed: int) -> dict:
    """A new state: each tensor in `names` moved by EPS times its norm in a random direction
    (module docstring); every other entry is the state's own tensor."""
    eps = check_eps(eps)
    out = dict(state)
    if eps == 0:
        return out
    for name in names:
        w = state[name]
        if not w.is_floating_point():
            continue
        norm = float(w.double().norm())
        if norm == 0:
            continue
        g = torch.Generator().manual_seed(derived_seed(seed, "perturb", name))
        noise = torch.randn(w.shape, generator=g, dtype=torch.float64)
        step = noise * (eps * norm / float(noise.norm()))
        out[name] = (w.double().cpu() + step).to(dtype=w.dtype, device=w.device)
    return out
