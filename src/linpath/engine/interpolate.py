"""Linear interpolation of network states: θ(x) = (1 - x)·θ_start + x·θ_end.

Floating-point entries (weights, biases, BatchNorm running statistics) are interpolated;
integer entries (BatchNorm's num_batches_tracked, unused in evaluation) take the end's value.
What happens to BatchNorm statistics beyond that is a named policy, see bn_stats.py.
"""

from __future__ import annotations

import torch

from linpath.errors import LinpathError


def check_compatible(start: dict, end: dict, start_name: str = "start", end_name: str = "end") -> None:
    """Raise naming the first key or shape where two states differ."""
    for key in start:
        if key not in end:
            raise LinpathError(f"{start_name} and {end_name} differ: key {key!r} is only in {start_name}")
        a, b = start[key], end[key]
        if a.shape != b.shape:
            raise LinpathError(
                f"{start_name} and {end_name} have different architectures: {key!r} has shape "
                f"{tuple(a.shape)} vs {tuple(b.shape)}"
            )
        if a.dtype.is_floating_point != b.dtype.is_floating_point:
            raise LinpathError(
                f"{start_name} and {end_name} differ in the type of {key!r}: {a.dtype} vs {b.dtype}"
            )
    for key in end:
        if key not in start:
            raise LinpathError(f"{start_name} and {end_name} differ: key {key!r} is only in {end_name}")


def interpolate_state(start: dict, end: dict, x: float) -> dict:
    """A new state dict at position x along the line from start (x=0) to end (x=1)."""
    return {
        k: torch.lerp(start[k], end[k], x) if start[k].is_floating_point() else end[k].clone() for k in start
    }


@torch.no_grad()
def assign_interpolation(targets: dict[str, torch.Tensor], start: dict, end: dict, x: float) -> None:
    """Write θ(x) into existing tensors (a model's parameters and buffers) without reallocating.

    Fastest when start and end are laid out like the targets (e.g. all channels-last): then
    one fused lerp writes each target; otherwise a temporary is copied in."""
    for k, target in targets.items():
        a, b = start[k], end[k]
        if not target.is_floating_point():
            target.copy_(b)
        elif a.stride() == target.stride() == b.stride() and a.dtype == target.dtype == b.dtype:
            torch.lerp(a, b, x, out=target)
        else:
            target.copy_(torch.lerp(a.to(target.dtype), b.to(target.dtype), x))
