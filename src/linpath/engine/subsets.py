"""Evaluation subsets: a fixed class-stratified sample of a split, and class counts."""

from __future__ import annotations

import torch

from linpath.errors import LinpathError


def class_counts(labels: torch.Tensor) -> torch.Tensor | None:
    """Examples per class of integer labels (None for other targets)."""
    if labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool or len(labels) == 0:
        return None
    return torch.bincount(labels.long()).double()


def stratified_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of a fixed, class-stratified subset of n examples (sorted).

    Each class gets n·N_c/N examples, rounded by largest remainder so they sum to n; within a
    class the examples are the first of a permutation that is a pure function of the seed, so
    a subset of n is the same on every run and machine."""
    if not isinstance(n, int) or n <= 0:
        raise LinpathError(f"--eval-examples must be a positive integer, got {n}")
    total = len(labels)
    if n >= total:
        return torch.arange(total)
    labels = labels.cpu().long()
    counts = torch.bincount(labels)
    quota = counts.double() * n / total
    take = quota.floor().long()
    order = torch.argsort(-(quota - take), stable=True)
    take[order[: n - int(take.sum())]] += 1
    if int(take[counts > 0].min()) < 2:
        raise LinpathError(
            f"--eval-examples {n} leaves a class with fewer than 2 examples, so no standard error can be "
            f"estimated; use at least {2 * int((counts > 0).sum())} (2 per class) or the whole split"
        )
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(total, generator=g)
    chosen = []
    for c in range(len(counts)):
        members = perm[labels[perm] == c]
        chosen.append(members[: int(take[c])])
    return torch.sort(torch.cat(chosen)).values
