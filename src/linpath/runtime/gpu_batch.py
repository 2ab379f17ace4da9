"""Evaluation batches as large as a GPU's free memory allows: on CUDA a convnet's time per
network is mostly kernel launches at small batches, so the whole evaluation set in one or a few
batches is the fastest. Used by the sweep engine and the per-epoch test evaluation of training;
the CPU keeps its cache-sized batches (callers do not ask here on the CPU).
"""

from __future__ import annotations

import torch

from linpath.runtime.device import available_memory

PROBE_EXAMPLES = 64  # examples in the forward whose peak memory is measured
MEMORY_SHARE = 0.25  # of the free memory, for one batch's activations (the rest: models, other work)


@torch.no_grad()
def forward_bytes_per_example(model: torch.nn.Module, sample: torch.Tensor) -> int | None:
    """Peak CUDA memory of one inference forward of `sample`, per example; None off CUDA, or
    when the probe fails (the caller then keeps its fixed batch, and the real forward reports)."""
    if sample.device.type != "cuda" or len(sample) == 0:
        return None
    try:
        torch.cuda.synchronize(sample.device)
        before = torch.cuda.memory_allocated(sample.device)
        torch.cuda.reset_peak_memory_stats(sample.device)
        model(sample)
        peak = torch.cuda.max_memory_allocated(sample.device)
    except Exception:
        return None
    return max(1, (peak - before) // len(sample))


def fitting_batch(
    n: int, per_example: int | None, free: int | None, floor: int, share: float = MEMORY_SHARE
) -> int:
    """The batch for n examples: all of them if `share` of `free` bytes holds their activations,
    else as many as it holds, never fewer than `floor` (or n, if smaller); `floor` where the
    sizes are unknown."""
    if n <= 0:
        return max(1, floor)
    if per_example is None or free is None:
        return floor
    fits = int(share * free) // max(1, per_example)
    return max(min(n, floor), min(n, fits))


def cuda_batch(model: torch.nn.Module, inputs: torch.Tensor, floor: int) -> int:
    """fitting_batch for evaluating `model` (in eval mode) on `inputs`, measured on its device."""
    per_example = forward_bytes_per_example(model, inputs[:PROBE_EXAMPLES])
    return fitting_batch(len(inputs), per_example, available_memory(inputs.device), floor)
