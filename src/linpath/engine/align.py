"""Weight matching (Ainsworth et al. 2023) for fully connected networks such as LeNet-300-100.

Permuting the hidden units of a layer (rows of its weight and bias, columns of the next
layer's weight) leaves the function unchanged, so two replicates may differ by such a
permutation and a straight path between them crosses needless barriers. align_mlp permutes b
to be as close as it can to a: it maximizes Σ_l <W_l^a, P_l W_l^b P_{l-1}^T> + <b_l^a, P_l b_l^b>
one layer at a time (a linear assignment given the neighbouring permutations, solved by
scipy's linear_sum_assignment), sweeping the layers in random order until no layer improves.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from linpath.engine.interpolate import check_compatible
from linpath.errors import LinpathError


def mlp_layers(state: dict) -> list[str]:
    """The prefixes of the linear layers in forward order (the state's order), checked to
    chain (each layer's inputs are the previous one's outputs) and to be all the state holds."""
    layers = [k[: -len(".weight")] for k, v in state.items() if k.endswith(".weight") and v.dim() == 2]
    known = {f"{p}.{s}" for p in layers for s in ("weight", "bias")}
    extra = [k for k in state if k not in known]
    if len(layers) < 2 or extra:
        what = f"entry {extra[0]!r}" if extra else f"{len(layers)} linear layer(s)"
        raise LinpathError(
            f"align_mlp handles fully connected networks (two or more linear layers only); found {what}"
        )
    for prev, layer in zip(layers, layers[1:]):
        if state[f"{layer}.weight"].shape[1] != state[f"{prev}.weight"].shape[0]:
            raise LinpathError(f"layers {prev!r} and {layer!r} do not chain: align_mlp needs a plain MLP")
    return layers


def permute_mlp(state: dict, perms: list) -> dict:
    """The state with hidden layer i's units reordered by perms[i] (unit j of the result is unit
    perms[i][j] of `state`); the same function as `state`."""
    layers = mlp_layers(state)
    if len(perms) != len(layers) - 1:
        raise LinpathError(f"{len(layers) - 1} hidden layers need as many permutations, got {len(perms)}")
    out = dict(state)
    for i, layer in enumerate(layers):
        w = state[f"{layer}.weight"]
        if i < len(perms):
            rows = torch.as_tensor(np.asarray(perms[i]), dtype=torch.long)
            w = w[rows]
            if f"{layer}.bias" in state:
                out[f"{layer}.bias"] = state[f"{layer}.bias"][rows].clone()
        if i > 0:
            w = w[:, torch.as_tensor(np.asarray(perms[i - 1]), dtype=torch.long)]
        out[f"{layer}.weight"] = w.clone()
    return out


def _similarity(a: list, b: list, perms: list, i: int) -> np.ndarray:
    """C[j, k]: how well unit k of b's hidden layer i matches unit j of a's, given the other
    layers' permutations (incoming weights and bias, then outgoing weights)."""
    w_a, bias_a = a[i]
    w_b, bias_b = b[i]
    if i > 0:
        w_b = w_b[:, perms[i - 1]]
    c = w_a @ w_b.T
    if bias_a is not None and bias_b is not None:
        c += np.outer(bias_a, bias_b)
    next_b = b[i + 1][0]
    if i + 1 < len(perms):
        next_b = next_b[perms[i + 1]]
    return c + a[i + 1][0].T @ next_b


def _arrays(state: dict, layers: list[str]) -> list:
    def array(key):
        return state[key].detach().to("cpu", torch.float64).numpy() if key in state else None

    return [(array(f"{p}.weight"), array(f"{p}.bias")) for p in layers]


def matching_permutations(state_a: dict, state_b: dict, max_sweeps: int = 100, seed: int = 0) -> list:
    """The hidden-unit permutations of b found by weight matching (see the module docstring)."""
    check_compatible(state_a, state_b, "state a", "state b")
    layers = mlp_layers(state_a)
    a, b = _arrays(state_a, layers), _arrays(state_b, layers)
    perms = [np.arange(w.shape[0]) for w, _ in a[:-1]]
    rng = np.random.default_rng(seed)
    for _ in range(max_sweeps):
        improved = False
        for i in rng.permutation(len(perms)):
            c = _similarity(a, b, perms, i)
            new = linear_sum_assignment(c, maximize=True)[1]
            rows = np.arange(len(new))
            old_value, new_value = c[rows, perms[i]].sum(), c[rows, new].sum()
            if new_value > old_value + 1e-12 * max(1.0, abs(old_value)):
                perms[i], improved = new, True
        if not improved:
            break
    return perms


def align_mlp(state_a: dict, state_b: dict, max_sweeps: int = 100, seed: int = 0) -> dict:
    """state_b with its hidden units permuted to match state_a's (the same function as b)."""
    return permute_mlp(state_b, matching_permutations(state_a, state_b, max_sweeps, seed))
