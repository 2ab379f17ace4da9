"""Permutation symmetries of a network's state, and weight matching over them (Ainsworth et al. 2023).

Reordering a layer's output units, together with everything that follows them (its bias, its
BatchNorm's weight, bias and running statistics, the next layer's input axis, and in a ResNet
every tensor added into the same residual stream), leaves the network's function unchanged. A
PermutationSpec names these symmetries: each group is one permutation, applied along the given
axis of each (state-dict key, axis) pair it lists.

Weight matching permutes b to be as close as it can to a: it maximizes Σ <W^a, π(W^b)> over the
compared tensors by coordinate descent, one group at a time (a linear assignment given the
other groups' permutations, solved by scipy's linear_sum_assignment), in a seeded random order,
until a whole sweep improves no group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from linpath.engine.interpolate import check_compatible
from linpath.errors import LinpathError


@dataclass(frozen=True)
class PermutationSpec:
    """groups: name -> the (key, axis) pairs one permutation reorders together. Keys in
    `unmatched` (BatchNorm running statistics) are permuted but left out of the similarity:
    weight matching compares trained weights only."""

    groups: dict[str, tuple[tuple[str, int], ...]]
    unmatched: frozenset[str] = field(default_factory=frozenset)

    def axes_of_keys(self) -> dict[str, list[tuple[int, str]]]:
        """key -> [(axis, group)], the permutations each tensor undergoes."""
        axes: dict[str, list[tuple[int, str]]] = {}
        for name, pairs in self.groups.items():
            for key, axis in pairs:
                axes.setdefault(key, []).append((axis, name))
        return axes

    def sizes(self, state: dict) -> dict[str, int]:
        """Each group's number of units in `state`, checked: every key present, each (key, axis)
        in one group only, and all of a group's axes of the same length."""
        sizes, seen = {}, set()
        for name, pairs in self.groups.items():
            for key, axis in pairs:
                if key not in state:
                    raise LinpathError(f"permutation group {name!r} names {key!r}, which the state lacks")
                if (key, axis) in seen:
                    raise LinpathError(f"{key!r} axis {axis} is in two permutation groups")
                seen.add((key, axis))
                n = state[key].shape[axis]
                if sizes.setdefault(name, n) != n:
                    raise LinpathError(
                        f"permutation group {name!r}: {key!r} has {n} units along axis {axis}, "
                        f"the group's other tensors {sizes[name]}"
                    )
        return sizes


def permute_state(state: dict, spec: PermutationSpec, perms: dict) -> dict:
    """`state` with each group's units reordered by perms[group] (unit j of the result is unit
    perms[group][j] of `state`); tensors outside the spec are shared, not copied."""
    sizes = spec.sizes(state)
    out = dict(state)
    for name, pairs in spec.groups.items():
        perm = np.asarray(perms[name])
        if sorted(perm.tolist()) != list(range(sizes[name])):
            raise LinpathError(f"permutation of group {name!r} is not a permutation of {sizes[name]} units")
        for key, axis in pairs:
            index = torch.as_tensor(perm, dtype=torch.long, device=out[key].device)
            out[key] = out[key].index_select(axis, index)
    return out


def _as_arrays(state: dict, keys) -> dict[str, np.ndarray]:
    return {k: state[k].detach().to("cpu", torch.float64).numpy() for k in keys}


def _similarity(a: dict, b: dict, spec: PermutationSpec, axes: dict, perms: dict, group: str) -> np.ndarray:
    """C[j, k]: how well unit k of b matches unit j of a in `group`, given the other groups'
    permutations: Σ over the group's compared tensors of <a's slice j, b's slice k>."""
    n = len(perms[group])
    c = np.zeros((n, n))
    for key, axis in spec.groups[group]:
        if key in spec.unmatched:
            continue
        w_b = b[key]
        for other_axis, other in axes[key]:
            if other_axis != axis:
                w_b = np.take(w_b, perms[other], axis=other_axis)
        w_a = np.moveaxis(a[key], axis, 0).reshape(n, -1)
        c += w_a @ np.moveaxis(w_b, axis, 0).reshape(n, -1).T
    return c


def weight_matching(
    state_a: dict, state_b: dict, spec: PermutationSpec, max_sweeps: int = 100, seed: int = 0
) -> dict[str, np.ndarray]:
    """The permutation of each group of b found by weight matching (see the module docstring)."""
    check_compatible(state_a, state_b, "state a", "state b")
    sizes = spec.sizes(state_a)
    axes = spec.axes_of_keys()
    compared = [k for k in axes if k not in spec.unmatched]
    a, b = _as_arrays(state_a, compared), _as_arrays(state_b, compared)
    names = list(spec.groups)
    perms = {name: np.arange(sizes[name]) for name in names}
    rng = np.random.default_rng(seed)
    for _ in range(max_sweeps):
        improved = False
        for i in rng.permutation(len(names)):
            group = names[i]
            c = _similarity(a, b, spec, axes, perms, group)
            new = linear_sum_assignment(c, maximize=True)[1]
            rows = np.arange(len(new))
            old_value, new_value = c[rows, perms[group]].sum(), c[rows, new].sum()
            if new_value > old_value + 1e-12 * max(1.0, abs(old_value)):
                perms[group], improved = new, True
        if not improved:
            break
    return perms
