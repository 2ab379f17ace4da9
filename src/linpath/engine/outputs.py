"""From what a model returns to the logits the scores use.

Models outside linpath return more than a tensor: Hugging Face classifiers an output object
with `.logits`, others a (logits, aux) tuple or a dict. Every place where outputs come out
of a model (PathEvaluator.forward, evaluate_model, the API's probe) passes them through
`to_logits`, so the API, `linpath path` and the sweep read them the same way; a user's
`output_fn` (API) / `--output` (CLI) replaces the default reading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from linpath.errors import LinpathError

OutputFn = Callable[[object], torch.Tensor]  # a model's output -> logits (or whatever the score takes)


def default_logits(output: object) -> torch.Tensor:
    """A tensor as is; a dict's "logits" (else its only tensor); a tuple's or list's first
    element; an object's `.logits` (Hugging Face's ModelOutput). Nested one level deep at most."""
    for _ in range(2):
        if isinstance(output, torch.Tensor):
            return output
        output = _unwrap(output)
    if isinstance(output, torch.Tensor):
        return output
    raise LinpathError(
        f"the model's output is a {type(output).__name__}, not logits: pass output_fn= (--output module:callable) "
        "mapping it to a tensor"
    )


def _unwrap(output: object) -> object:
    """One level of default_logits: the part of `output` that should hold the logits."""
    if isinstance(output, Mapping):
        if "logits" in output:
            return output["logits"]
        tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
        return tensors[0] if len(tensors) == 1 else output
    if isinstance(output, (tuple, list)):
        return output[0] if output else output
    logits = getattr(output, "logits", None)
    return logits if logits is not None else output


def to_logits(output: object, output_fn: OutputFn | None = None) -> torch.Tensor:
    """The model's output as a tensor: by `output_fn` when given, else by default_logits."""
    if output_fn is None:
        return default_logits(output)
    logits = output_fn(output)
    if not isinstance(logits, torch.Tensor):
        raise LinpathError(
            f"output_fn returned a {type(logits).__name__}, not a tensor (given a {type(output).__name__})"
        )
    return logits
