"""Whether two states belong to one training: the correlation of their weight matrices.

A training's states stay correlated with each other: an update is small beside the weights it
changes, so the weight matrices at two kept steps correlate well above zero (above 0.95 between
consecutive kept steps of the paper's grid for LeNet-300-100 on MNIST over 2,000 steps and
ResNet-20 on CIFAR-10; above 0.8 for a 10-16-3 MLP at learning rate 0.2, momentum 0.9, over
3,000 steps). Two independent trainings start from independent random draws and their hidden
units are in no common order, so their matrices correlate about 0, within a noise σ that
`Correlation.noise` computes from the tensors' sizes (about 1/√n for n weights). A pair of
states whose correlation is below INDEPENDENCE_Z·σ (and below LINEAGE_FLOOR) is as two
independent trainings are: a replicate made of two trainings (a crash resumed from a fresh
model). The Keeper refuses such a resume and the audit finds such a replicate. A training
that forgets its weights entirely between two kept steps (a tiny network at a chaotic learning
rate, strong weight decay over thousands of steps) looks the same; no real network tried does.

Only weight matrices count (floating tensors of at least two dimensions and MIN_ENTRIES
entries, in both states with one shape): biases, normalization gains and class priors are
alike across independent trainings too. Each tensor is centered; the sums are pooled over
tensors and taken in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

LINEAGE_FLOOR = 0.5  # never "independent" above this, however small the network
INDEPENDENCE_Z = 4.0  # independent trainings fall below INDEPENDENCE_Z·σ but once in 30,000
MIN_ENTRIES = 64


@dataclass(frozen=True)
class Correlation:
    """The pooled correlation of two states' weight matrices, and `noise`: its standard
    deviation were the states independent, Σ_k p_k·q_k / n_k under the square root (p_k, q_k:
    tensor k's shares of the two states' squared norms; n_k its entries)."""

    value: float
    noise: float

    @property
    def independent(self) -> bool:
        """Whether the pair is as two independent trainings are (see the module docstring)."""
        return self.value < min(LINEAGE_FLOOR, INDEPENDENCE_Z * self.noise)


def weight_correlation(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> Correlation | None:
    """Σ⟨a_k − ā_k, b_k − b̄_k⟩ / √(Σ‖a_k − ā_k‖² · Σ‖b_k − b̄_k‖²) over the weight matrices
    both states hold (see the module docstring); None where they hold none that vary."""
    parts = []  # (⟨x, y⟩, ‖x‖², ‖y‖², n) of each matrix
    for key, x in a.items():
        y = b.get(key)
        if y is None or not _matrix(x) or not _matrix(y) or x.shape != y.shape:
            continue
        x = x.detach().reshape(-1).to("cpu", torch.float64)
        y = y.detach().reshape(-1).to("cpu", torch.float64)
        x, y = x - x.mean(), y - y.mean()
        xx, yy = float(x @ x), float(y @ y)
        if xx == 0 or yy == 0 or not math.isfinite(xx) or not math.isfinite(yy):
            continue  # a zero-initialized or non-finite matrix says nothing
        parts.append((float(x @ y), xx, yy, x.numel()))
    norm_a, norm_b = sum(p[1] for p in parts), sum(p[2] for p in parts)
    if not parts:
        return None
    noise = math.sqrt(sum(xx / norm_a * yy / norm_b / n for _, xx, yy, n in parts))
    return Correlation(sum(p[0] for p in parts) / math.sqrt(norm_a * norm_b), noise)


def _matrix(t: torch.Tensor) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() >= 2 and t.numel() >= MIN_ENTRIES
