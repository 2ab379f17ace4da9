"""Weight matching from the Python API: state b permuted to match state a."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from linpath.api.states import StateLike, load_state
from linpath.engine.align import align_states
from linpath.engine.interpolate import check_compatible
from linpath.errors import LinpathError
from linpath.io.checkpoints import match_keys
from linpath.io.files import atomic_write


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
        a, b = match_keys(a, own), match_keys(b, own)
        check_compatible(own, a, "the model", "state a")
        check_compatible(own, b, "the model", "state b")
    return align_states(a, b, model, seed=seed)


def _check_out(out: Path, inputs: tuple, force: bool) -> None:
    """Never write over an input, nor over an existing file unless `force`."""
    if out.is_dir():
        raise LinpathError(f"--out {out} is a folder: give a file name such as b_aligned.pt")
    if any(Path(given).exists() and out.resolve() == Path(given).resolve() for given in inputs):
        raise LinpathError(f"--out {out} is one of the inputs: write the aligned state to a new file")
    if out.exists() and not force:
        raise LinpathError(f"{out} exists: pass --force to replace it")


def parameter_distance(a: dict, b: dict, keys) -> float:
    """‖a − b‖ over the trained parameters (`keys`), running statistics left out."""
    return sum(float((b[k].double() - a[k].double()).pow(2).sum()) for k in keys) ** 0.5


def align_files(
    a: str | os.PathLike,
    b: str | os.PathLike,
    net: nn.Module,
    out: str | os.PathLike,
    key: str | None = None,
    seed: int = 0,
    force: bool = False,
) -> tuple[Path, float, float]:
    """Write B aligned to A (units of the model `net`, see align()) to `out`; returns the file and ‖B − A‖, ‖aligned B − A‖ over the
    model's parameters (how much closer the permutation brought B)."""
    out = Path(out)
    _check_out(out, (a, b), force)
    aligned = align(a, b, net, seed=seed, key=key)
    own = net.state_dict()
    state_a = match_keys(load_state(a, "state a", key), own)
    state_b = match_keys(load_state(b, "state b", key), own)
    params = [name for name, _ in net.named_parameters()]
    before, after = parameter_distance(state_a, state_b, params), parameter_distance(state_a, aligned, params)
    atomic_write(out, lambda f: torch.save({k: v.contiguous() for k, v in aligned.items()}, f))
    return out, before, after
