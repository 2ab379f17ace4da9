"""The path API: the paper's line on your own model and states.

    curve = linpath.path(model, "start.pt", "end.pt", (inputs, targets))
    curve.x, curve.loss, curve.error          # numpy arrays (error None for regression)
    curve.metrics()["loss"]["rise_over_start"]
    curve.plot("path.png")

It runs on the sweep's engine (sweep/evaluation.py): the data is materialized once as two
tensors on the device, and each point θ(x) is written into one copy of the model in place.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from linpath.api.curve import PathCurve
from linpath.api.inputs import (
    BatchFn,
    DataLike,
    as_evalset,
    default_device,
    fit_inputs,
    grid_xs,
    is_classification,
    make_score,
)
from linpath.api.states import StateLike, endpoints
from linpath.api.streamed import is_streamed, streamed_path
from linpath.data.source import EvalSet
from linpath.engine.bn_stats import DEFAULT_BN_BATCHES, check_bn_policy
from linpath.engine.outputs import OutputFn
from linpath.engine.params import check_hold, spec_terms
from linpath.engine.streamed import MIN_EXAMPLES
from linpath.engine.subsets import class_counts
from linpath.errors import LinpathError
from linpath.runtime.device import check_precision, resolve_device
from linpath.sweep.evaluation import bn_batches as recompute_batches
from linpath.sweep.evaluation import evaluation_subset, line_job
from linpath.sweep.grids import Grid


def path(
    model: nn.Module,
    start_state: StateLike,
    end_state: StateLike,
    data: DataLike,
    grid: int | Grid | Sequence[float] = 100,
    bn: str = "interpolate",
    loss_fn: BatchFn | None = None,
    error_fn: BatchFn | None = None,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    bn_data: DataLike | None = None,
    bn_batches: int = DEFAULT_BN_BATCHES,
    bn_batch_size: int = 128,
    allow_nonfinite: bool = False,
    key: str | None = None,
    output_fn: OutputFn | None = None,
    params: str | None = None,
    hold: str = "end",
    eval_examples: int | None = None,
    task: str = "classification",
    se_target: float | None = None,
    min_examples: int = MIN_EXAMPLES,
    shard: tuple[int, int] | None = None,
) -> PathCurve:
    """Loss (and error) along θ(x) = (1 - x)·start + x·end; `model` is not modified (a copy is
    evaluated). Every argument is described in docs/own_model.md; in short:
    start_state, end_state: state dicts, modules or files (any format io/checkpoints.py reads,
    weights-only; `key` a dotted path inside); data: (inputs, targets) tensors, a Dataset or a
    DataLoader of pairs; grid: a number of points in [0, 1], a Grid, or x values; bn:
    "interpolate" (the paper's) or "recompute" (from `bn_batches` batches of `bn_batch_size`
    inputs of `bn_data`, default the evaluation data); loss_fn, error_fn: (outputs, targets) ->
    batch mean (defaults: cross-entropy, and 1 - accuracy for class-index targets); output_fn:
    the model's output -> logits; device (default the model's), batch_size (the engine's),
    precision "fp32" or "bf16"; params/hold: move only some tensors (engine/params.py), the
    others held at the `hold` end; eval_examples: a stratified subset, with standard errors.
    Model folders (config.json, *.safetensors) as states or model, task="causal-lm", se_target
    (a point stops once the loss's standard error is below it, after min_examples) or streamed
    data go to api/streamed.py (shard = (rank, size), default the torchrun world's)."""
    if is_streamed(model, start_state, end_state, data, task, se_target):
        return streamed_path(model, start_state, end_state, data, grid, locals())
    if not isinstance(model, nn.Module):
        raise LinpathError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_options(bn, precision, batch_size, params, hold)
    xs = grid if isinstance(grid, Grid) else grid_xs(grid)
    dev = default_device(model) if device is None else resolve_device(str(device))
    work = copy.deepcopy(model)
    start, end = endpoints(work.state_dict(), start_state, end_state, key, allow_nonfinite)
    evalset = fit_inputs(work, as_evalset(data, dev, batch_size or 1000), dev, output_fn)
    evalset, population = _subset(evalset, eval_examples)
    batches = None
    if bn == "recompute":
        source = evalset if bn_data is None else as_evalset(bn_data, dev, batch_size or 1000)
        batches = recompute_batches(source, bn_batches, bn_batch_size, device=dev)
    return evaluate_curve(
        work, start, end, evalset, xs, bn, loss_fn, error_fn, batch_size, precision, batches, output_fn,
        population, params=params or "", hold=hold,
    )  # fmt: skip


def _check_options(bn: str, precision: str, batch_size, params: str | None, hold: str) -> None:
    check_hold(hold)
    if params is None and hold != "end":
        raise LinpathError("hold only applies with params (without it every tensor moves)")
    if params is not None:
        spec_terms(params)
    check_bn_policy(bn)
    check_precision(precision)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
        raise LinpathError(f"batch_size must be a positive integer, got {batch_size!r}")


def _subset(evalset: EvalSet, eval_examples: int | None) -> tuple[EvalSet, torch.Tensor | None]:
    """path()'s eval_examples: the sweep's stratified subset and the data's class counts."""
    if eval_examples is None:
        return evalset, None
    if isinstance(eval_examples, bool) or not isinstance(eval_examples, int) or eval_examples <= 0:
        raise LinpathError(f"eval_examples must be a positive integer, got {eval_examples!r}")
    if class_counts(evalset.labels) is None:
        raise LinpathError("eval_examples needs class-index targets (the subset is stratified by class)")
    return evaluation_subset(evalset, eval_examples)


def evaluate_curve(
    model: nn.Module,
    start: dict,
    end: dict,
    evalset: EvalSet,
    xs: Sequence[float] | Grid,
    bn: str = "interpolate",
    loss_fn: BatchFn | None = None,
    error_fn: BatchFn | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    bn_batches: list[torch.Tensor] | None = None,
    output_fn: OutputFn | None = None,
    population: torch.Tensor | None = None,
    on_points: Callable[[int], None] | None = None,
    params: str = "",
    hold: str = "end",
) -> PathCurve:
    """path() after its conversions: `model` is overwritten in place, `evalset` is on the
    device, `bn_batches` are input tensors. For callers that hold these already (spawn.py,
    `linpath path`). `xs` may be a Grid (adaptive grids refine where the curve peaks);
    `population` holds the split's class counts when `evalset` is a stratified subset of it
    (standard errors, as in the sweep); `on_points(n)` is called after every n points;
    `params` ("" for all) and `hold` restrict the moved tensors."""
    classification = is_classification(evalset.labels)
    score = make_score(loss_fn, error_fn, classification)
    job = line_job(
        model, evalset, bn, bn_batches, params, hold, precision, score,
        batch_size=batch_size, output_fn=output_fn, population=population,
    )  # fmt: skip
    xs, results = job.curve(start, end, xs, on_points)
    has_error = error_fn is not None or classification
    return PathCurve.of(xs, results, len(evalset), bn, precision, evalset.name, has_error)
