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
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from linpath.analysis.metrics import path_metrics
from linpath.api.inputs import BatchFn, DataLike, as_evalset, fit_inputs, is_classification, make_score
from linpath.api.states import StateLike, endpoints
from linpath.data.source import EvalSet
from linpath.engine.bn_stats import DEFAULT_BN_BATCHES, check_bn_policy
from linpath.engine.outputs import OutputFn
from linpath.engine.params import check_hold, spec_terms
from linpath.engine.subsets import class_counts
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.tables import csv_frame
from linpath.runtime.device import check_precision, resolve_device
from linpath.sweep.evaluation import bn_batches as recompute_batches
from linpath.sweep.evaluation import evaluation_subset, line_job
from linpath.sweep.grids import Grid
from linpath.sweep.items import PATH_COLUMNS, format_rows


@dataclass(frozen=True)
class PathCurve:
    """Loss (and error) at each x of θ(x) = (1 - x)·θ_start + x·θ_end."""

    x: np.ndarray
    loss: np.ndarray
    error: np.ndarray | None  # None when there is no error function (e.g. regression)
    examples: int
    bn: str = "interpolate"
    precision: str = "fp32"
    split: str = "custom"
    loss_se: np.ndarray | None = None  # standard errors, where the engine estimates them
    error_se: np.ndarray | None = None

    @classmethod
    def of(
        cls, xs, results, examples: int, bn: str, precision: str, split: str, has_error: bool = True
    ) -> PathCurve:
        """The curve of an engine's results (engine.scoring.Result) at xs."""
        values = {
            q: np.array([getattr(r, q) for r in results], dtype=float)
            for q in ("loss", "error", "loss_se", "error_se")
        }
        return cls(
            x=np.array(xs, dtype=float),
            loss=values["loss"],
            error=values["error"] if has_error else None,
            examples=examples,
            bn=bn,
            precision=precision,
            split=split,
            loss_se=values["loss_se"],
            error_se=values["error_se"] if has_error else None,
        )

    def metrics(self) -> dict[str, dict[str, float]]:
        """linpath.metrics.path_metrics of the loss and, when present, the error curve."""
        out = {"loss": path_metrics(self.x, self.loss)}
        if self.error is not None:
            out["error"] = path_metrics(self.x, self.error)
        return out

    def rows(self, replicate: int = 0, t: int = 0) -> list[list]:
        """Rows in paths.csv's format (sweep.merge.PATH_COLUMNS); the error is nan when absent."""
        n = len(self.x)
        nan = [math.nan] * n
        columns = {
            "x": self.x,
            "loss": self.loss,
            "error": self.error if self.error is not None else nan,
            "loss_se": self.loss_se if self.loss_se is not None else nan,
            "error_se": self.error_se if self.error_se is not None else nan,
        }
        fixed = {
            "replicate": replicate,
            "t": t,
            "split": self.split,
            "bn": self.bn,
            "examples": self.examples,
            "precision": self.precision,
        }
        return [
            [repr(float(columns[c][i])) if c in columns else fixed.get(c, "") for c in PATH_COLUMNS]
            for i in range(n)
        ]

    def to_frame(self, replicate: int = 0, t: int = 0):
        """The curve as a pandas DataFrame, one row per x, in paths.csv's columns (so it
        concatenates with linpath.load(run).paths); needs pandas (linpath[pandas])."""
        return csv_frame(format_rows(self.rows(replicate, t)))

    def to_csv(self, path: str | os.PathLike, replicate: int = 0, t: int = 0) -> Path:
        """Write the curve as a paths.csv-style table (atomically)."""
        atomic_write_text(Path(path), format_rows(self.rows(replicate, t)))
        return Path(path)

    def plot(self, path: str | os.PathLike | None = None, title: str | None = None):
        """A matplotlib Figure of loss (and error) against x; saved to `path` when given.

        Built without pyplot, so it changes no global matplotlib state (safe in notebooks,
        where the returned figure displays itself)."""
        from matplotlib.figure import Figure

        quantities = [("loss", self.loss)] + ([("error", self.error)] if self.error is not None else [])
        fig = Figure(figsize=(5 * len(quantities), 3.8))
        for i, (name, values) in enumerate(quantities):
            ax = fig.add_subplot(1, len(quantities), i + 1)
            ax.plot(self.x, values, color="C0", marker="o" if len(self.x) <= 30 else None, markersize=3)
            ax.set_xlabel("interpolation x  (0 = start, 1 = end)")
            ax.set_ylabel(name if self.split == "custom" else f"{self.split} {name}")
            ax.grid(alpha=0.3)
        fig.suptitle(title or f"linear path between two states (BN {self.bn}, {self.examples} examples)")
        fig.tight_layout()
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=150, bbox_inches="tight")
        return fig


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
    others held at the `hold` end; eval_examples: a stratified subset, with standard errors."""
    if not isinstance(model, nn.Module):
        raise LinpathError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_options(bn, precision, batch_size, params, hold)
    xs = grid if isinstance(grid, Grid) else _grid_xs(grid)
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


def _grid_xs(grid: int | Grid | Sequence[float]) -> list[float]:
    if isinstance(grid, bool):
        raise LinpathError(f"grid must be a number of points, a Grid or a list of x, got {grid!r}")
    if isinstance(grid, int):
        return Grid(points=grid).xs()
    xs = [float(x) for x in grid]
    if not xs or not all(math.isfinite(x) for x in xs):
        raise LinpathError("grid must hold at least one finite x")
    return xs


def default_device(model: nn.Module) -> torch.device:
    """Where the model's tensors are (the CPU for a model without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


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
