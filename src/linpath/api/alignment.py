"""Weight matching from the Python API: state b permuted to match state a."""

from __future__ import annotations

import torch
from torch import nn

from linpath.api.states import StateLike, load_state
from linpath.engine.align import align_states
from linpath.engine.interpolate import check_compatible
from linpath.errors import LinpathError
from linpath.io.checkpoints import fit_keys


def align(
    state_a: StateLike,
    state_b: StateLike,
    model: nn.Module | None = None,
    seed: int = 0,
    key: str | None = None,
) -> dict[str, torch.Tensor]:
    """State b with its units permuted to match state a's by weight matching (Ainsworth et al.
    2023): the same function as b, usually much closer to a, so that
    path(model, a, align(a, b, model), ...) shows the barrier left after the permutation
    symmetry is taken out. `model` (a LeNet, cifar_vgg or cifar_resnet model) gives the
    permutation groups (see engine/align.py); without it the states must be a plain MLP.
    States load as in path() (`key`, wrappers, a "module." prefix fitted to the model's keys)."""
    a = load_state(state_a, "state a", key)
    b = load_state(state_b, "state b", key)
    if model is not None:
        if not isinstance(model, nn.Module):
            raise LinpathError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        own = model.state_dict()
        a, b = fit_keys(a, own), fit_keys(b, own)
        check_compatible(own, a, "the model", "state a")
        check_compatible(own, b, "the model", "state b")
    return align_states(a, b, model, seed=seed)
