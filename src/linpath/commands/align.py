"""`linpath align A B --model M --out OUT`: B's units permuted to match A's (weight matching),
written as a plain weights-only state dict that `linpath path A OUT` (or anything) can load."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from linpath.api import align, load_state
from linpath.commands.path import resolve_model
from linpath.errors import LinpathError
from linpath.io.checkpoints import fit_keys
from linpath.io.files import atomic_write


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
    model: str,
    out: str | os.PathLike,
    num_classes: int = 10,
    key: str | None = None,
    seed: int = 0,
    force: bool = False,
) -> tuple[Path, float, float]:
    """Write B aligned to A to `out`; returns the file and ‖B − A‖, ‖aligned B − A‖ over the
    model's parameters (how much closer the permutation brought B)."""
    out = Path(out)
    _check_out(out, (a, b), force)
    net = resolve_model(model, num_classes)
    aligned = align(a, b, net, seed=seed, key=key)
    own = net.state_dict()
    state_a = fit_keys(load_state(a, "state a", key), own)
    state_b = fit_keys(load_state(b, "state b", key), own)
    params = [name for name, _ in net.named_parameters()]
    before, after = parameter_distance(state_a, state_b, params), parameter_distance(state_a, aligned, params)
    atomic_write(out, lambda f: torch.save({k: v.contiguous() for k, v in aligned.items()}, f))
    return out, before, after
