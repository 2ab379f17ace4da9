"""What one batch contributes to a point's loss and error, per unit, for the streamed evaluator.

A unit is what the standard errors are over: an example for classification, a sequence for a
causal language model (its summed token losses and its number of predicted tokens), the batch
for a user's batch-mean loss_fn. A point's loss is Σ loss / Σ count over the units evaluated
(mean cross-entropy per example, or per token), its error Σ errors / Σ count.

causal-lm follows Hugging Face's convention: `targets` are the input ids (or labels with
IGNORE_INDEX where nothing is to be predicted, e.g. padding); the logits at position i predict
the target at i + 1, so the first position of each sequence is never a target. Its error is
the next-token error (the argmax is not the target), its perplexity exp(loss), and its bits per
byte Σ nats / ln 2 / Σ UTF-8 bytes of the evaluated text where the data gives the byte counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from linpath.engine.choices import TASKS
from linpath.errors import LinpathError

IGNORE_INDEX = -100  # targets never scored (padding), as in Hugging Face and F.cross_entropy


@dataclass
class Units:
    """Per unit of one batch, each of shape (U,): summed loss (nats), errors, and targets."""

    loss: torch.Tensor
    errors: torch.Tensor
    count: torch.Tensor


def classification_units(logits: torch.Tensor, labels: torch.Tensor) -> Units:
    """One unit per example: its cross-entropy, whether the argmax misses, count 1."""
    logits = logits.float()
    loss = F.cross_entropy(logits, labels, reduction="none")
    wrong = (logits.argmax(1) != labels).double()
    return Units(loss.double(), wrong, torch.ones_like(wrong))


def causal_lm_units(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> Units:
    """One unit per sequence: the summed next-token cross-entropy over its scored positions,
    its next-token errors and the number of scored positions (see the module's docstring)."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise LinpathError(
            f"causal-lm needs logits (batch, length, vocabulary) and targets (batch, length); got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    logits, targets = logits[:, :-1].float(), targets[:, 1:]
    scored = targets != ignore_index
    token_loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index, reduction="none"
    ).view(targets.shape)
    wrong = (logits.argmax(-1) != targets) & scored
    return Units(token_loss.double().sum(1), wrong.double().sum(1), scored.double().sum(1))


BatchFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def batch_units(loss_fn: BatchFn | None, error_fn: BatchFn | None, classification: bool):
    """The units of a user's batch-mean loss_fn / error_fn: one unit per batch, weighted by
    its size (so the point's loss is the example-weighted mean, as in the preloaded engine)."""

    def mean_of(fn: BatchFn, outputs, targets, what: str) -> torch.Tensor:
        value = torch.as_tensor(fn(outputs, targets))
        if value.numel() != 1:
            raise LinpathError(
                f"{what} must return the mean over the batch (one number), got shape {tuple(value.shape)}"
            )
        return value.double().reshape(1)

    def units(outputs: torch.Tensor, targets: torch.Tensor) -> Units:
        n = torch.full((1,), float(len(targets)), dtype=torch.float64, device=outputs.device)
        loss = mean_of(loss_fn or F.cross_entropy, outputs, targets, "loss_fn").to(n.device) * n
        if error_fn is not None:
            errors = mean_of(error_fn, outputs, targets, "error_fn").to(n.device) * n
        elif classification:
            errors = (outputs.argmax(1) != targets).double().sum().reshape(1)
        else:
            errors = torch.full_like(n, math.nan)
        return Units(loss, errors, n)

    return units


@dataclass(frozen=True)
class Task:
    """A task as the streamed evaluator uses it."""

    name: str  # "classification", "causal-lm" or "custom"
    units: Callable[[torch.Tensor, torch.Tensor], Units]
    has_error: bool
    unit: str  # what the standard errors are over: example, sequence or batch
    per: str  # what the loss is a mean over: example or token


def make_task(
    task: str = "classification",
    loss_fn: BatchFn | None = None,
    error_fn: BatchFn | None = None,
    classification: bool = True,
) -> Task:
    """The task by name; a loss_fn or error_fn makes it "custom" (per-batch units)."""
    if task not in TASKS:
        raise LinpathError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    if loss_fn is not None or error_fn is not None:
        if task != "classification":
            raise LinpathError(
                f"loss_fn/error_fn replace the task's own loss: give them or task={task!r}, not both"
            )
        has_error = error_fn is not None or classification
        return Task("custom", batch_units(loss_fn, error_fn, classification), has_error, "batch", "example")
    if task == "causal-lm":
        return Task(task, causal_lm_units, True, "sequence", "token")
    if not classification:
        raise LinpathError(
            "the targets are not class indices: pass task='causal-lm' (--task causal-lm) or a loss_fn"
        )
    return Task(task, classification_units, True, "example", "example")
