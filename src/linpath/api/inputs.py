"""Evaluation data as the Python API takes it (tensors, a Dataset, a DataLoader), materialized
once on the device, checked against the model, and scored by the user's loss and error."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from linpath.data.source import EvalSet, SourceSplit
from linpath.engine.outputs import OutputFn, to_logits
from linpath.engine.scoring import classification_score
from linpath.engine.tasks import batch_units
from linpath.errors import LinpathError
from linpath.sweep.grids import Grid

DataLike = object  # (inputs, targets) tensors, a Dataset or DataLoader of pairs, an EvalSet or a SourceSplit
# (outputs, targets) -> the mean over the batch, like torch.nn.functional's losses
BatchFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def checked_inputs(
    model: nn.Module, evalset: EvalSet, dev: torch.device, output_fn: OutputFn | None = None
) -> EvalSet:
    """Inputs the model accepts: floating inputs cast to the model's floating dtype, then one
    example run through it, so wrong dtypes, shapes or class labels are one line, not a traceback."""
    inputs, labels = evalset.inputs, evalset.labels
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if inputs.is_floating_point() and len(dtypes) == 1 and inputs.dtype not in dtypes:
        inputs = inputs.to(next(iter(dtypes)))
    probe = copy.deepcopy(model).to(dev).eval()
    try:
        with torch.no_grad():
            out = probe(inputs[:2])
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LinpathError(
            f"the model cannot run on the data's inputs ({inputs.dtype}, shape {tuple(inputs.shape[1:])}): {first}"
        ) from None
    out = to_logits(out, output_fn)
    if is_classification(labels) and isinstance(out, torch.Tensor) and out.dim() == 2 and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= out.shape[1]:
            raise LinpathError(
                f"the data's class labels run from {low} to {high}, but the model has {out.shape[1]} outputs "
                f"(labels must lie in 0..{out.shape[1] - 1})"
            )
    return EvalSet(inputs, labels, evalset.name) if inputs is not evalset.inputs else evalset


def _pair(batch, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise LinpathError(f"{where} must be an (inputs, targets) pair, got {type(batch).__name__}")
    inputs, targets = (torch.as_tensor(b) for b in batch)
    return inputs, targets


def as_evalset(data: DataLike, device: torch.device | str = "cpu", batch_size: int = 1000) -> EvalSet:
    """Materialize evaluation data once, as two tensors on `device`.

    Accepts an (inputs, targets) pair of tensors, a Dataset whose items are such pairs, a
    DataLoader yielding such batches, or an EvalSet. The order does not matter (every result is
    a mean), but random augmentation in a Dataset would be frozen at this one draw.
    """
    device = torch.device(device)
    name = "custom"
    if isinstance(data, SourceSplit):
        data = data.eval_set(device)
    if isinstance(data, EvalSet):
        inputs, targets, name = data.inputs, data.labels, data.name
    elif (
        isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data)
    ):
        inputs, targets = data
    elif isinstance(data, (DataLoader, Dataset)):
        loader = (
            data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, shuffle=False)
        )
        parts = [_pair(batch, "each batch of the data") for batch in loader]
        if not parts:
            raise LinpathError("the data is empty")
        inputs = torch.cat([p[0] for p in parts])
        targets = torch.cat([p[1] for p in parts])
    else:
        raise LinpathError(
            f"data must be an (inputs, targets) pair of tensors, a Dataset or a DataLoader, got {type(data).__name__}"
        )
    if len(inputs) != len(targets):
        raise LinpathError(f"the data has {len(inputs)} inputs but {len(targets)} targets")
    if len(inputs) == 0:
        raise LinpathError("the data is empty")
    return EvalSet(inputs.to(device), targets.to(device), name)


def is_classification(targets: torch.Tensor) -> bool:
    return not targets.is_floating_point() and not targets.is_complex() and targets.dtype != torch.bool


def make_score(loss_fn: BatchFn | None, error_fn: BatchFn | None, classification: bool):
    """The engine's per-batch score from batch-mean loss and error functions.

    Defaults: mean cross-entropy, and 1 - accuracy when the targets are class indices. A user's
    functions are read as the streamed evaluator reads them (engine/tasks.batch_units: the batch
    sums are mean × size), so both engines score them alike."""
    if loss_fn is None and error_fn is None and classification:
        return classification_score
    units = batch_units(loss_fn, error_fn, classification)

    def score(outputs: torch.Tensor, targets: torch.Tensor):
        u = units(outputs, targets)
        return u.loss.reshape(()), u.errors.reshape(())

    return score


def grid_of(grid: int | Grid | Sequence[float]) -> Grid:
    """The API's grid: a number of evenly spaced points in [0, 1], a Grid, or x values."""
    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, bool) or isinstance(grid, (str, bytes)):
        raise LinpathError(f"grid must be a number of points, a Grid or a list of x, got {grid!r}")
    if isinstance(grid, int):
        return Grid(points=grid)
    try:
        xs = tuple(float(x) for x in grid)
    except (TypeError, ValueError):
        raise LinpathError(f"grid must be a number of points, a Grid or a list of x, got {grid!r}") from None
    if not xs or not all(math.isfinite(x) for x in xs):
        raise LinpathError("grid must hold at least one finite x")
    return Grid(kind="values", values=xs)


def default_device(model: nn.Module) -> torch.device:
    """Where the model's tensors are (the CPU for a model without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
