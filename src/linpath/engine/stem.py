"""Finding a model's linear stem by watching one forward pass, not by its name.

The stem is a layer whose output is linear in its own parameters for a fixed input: then
stem_{θ(x)}(input) = (1 - x)·stem_{θ_start}(input) + x·stem_{θ_end}(input) exactly, and the
engine computes the two endpoint outputs once per path and mixes them (evaluator.py). That
holds for an nn.Linear or a convolution (weight and bias together) applied to the network's
raw input, or to a view of it (flatten, view, reshape without a copy): nothing that depends on
θ may come before it. A forward pre-hook on every leaf module sees what each receives; the
stem is the first Linear/Conv whose input shares the raw input's memory, unmodified. Anything
else (an input scaled by a learned parameter, an Embedding, a weight-normalized layer, a layer
called twice) gives no stem, and the engine evaluates every point in full.
"""

from __future__ import annotations

import torch
from torch import nn

LINEAR_KINDS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _plain_linear(module: nn.Module) -> bool:
    """A Linear or convolution whose parameters are its own weight (and bias), used as they are:
    no parametrization, weight norm or hook that would make the output nonlinear in them."""
    return (
        type(module) in LINEAR_KINDS
        and set(module._parameters) <= {"weight", "bias"}
        and not module._forward_pre_hooks
        and not module._forward_hooks
        and not hasattr(module, "parametrizations")
    )


def _views_of(raw: torch.Tensor, version: int, tensor) -> bool:
    """Whether `tensor` is the raw input or a view of its memory, not written since."""
    return (
        isinstance(tensor, torch.Tensor)
        and tensor.untyped_storage().data_ptr() == raw.untyped_storage().data_ptr()
        and tensor.dtype == raw.dtype
        and raw._version == version
    )


@torch.no_grad()
def find_linear_stem(model: nn.Module, example: torch.Tensor) -> str | None:
    """The name of the module that is `model`'s linear stem on inputs like `example`, or None.

    Runs `model` once (eval mode) on `example`; the model's own errors give None, as does a
    candidate called more than once per forward pass (its mixed output would stand in twice)."""
    names = {m: name for name, m in model.named_modules() if name}
    calls: list[tuple[nn.Module, bool]] = []
    raw = example.clone()
    version = raw._version

    def record(module, inputs):
        calls.append((module, len(inputs) == 1 and _views_of(raw, version, inputs[0])))

    leaves = [m for m in names if not any(True for _ in m.children())]
    hooks = [m.register_forward_pre_hook(record) for m in leaves]
    try:
        model.eval()
        model(raw)
    except Exception:
        return None
    finally:
        for h in hooks:
            h.remove()
    for module, on_raw_input in calls:
        if type(module) in LINEAR_KINDS and on_raw_input:
            if not _plain_linear(module) or sum(m is module for m, _ in calls) != 1:
                return None
            return names[module]
    return None
