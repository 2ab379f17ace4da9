"""The Python API: the paper's analysis on your own model and checkpoints.

    import linpath
    curve = linpath.path(model, "start.pt", "end.pt", (inputs, targets))
    curve.x, curve.loss, curve.error          # numpy arrays (error None for regression)
    curve.metrics()["loss"]["rise_over_start"]
    curve.plot("path.png")

It runs on the sweep engine (evaluate.PathEvaluator): the data is materialized once as two
tensors on the device, and each point θ(x) is written into one copy of the model in place.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from linpath.analysis.curves import REPLICATE_COLUMNS, SUMMARY_COLUMNS, settings_of
from linpath.analysis.metrics import path_metrics
from linpath.analysis.plane import PlaneRows, Surface
from linpath.config.spec import Spec, read_spec
from linpath.data.source import EvalSet
from linpath.data.stream import as_stream, is_stream
from linpath.engine.align import align_states
from linpath.engine.bn_stats import DEFAULT_BN_BATCHES, check_bn_policy
from linpath.engine.evaluator import PathEvaluator
from linpath.engine.interpolate import check_compatible
from linpath.engine.lazy_states import DictState, StateMix, check_finite_states, full_state
from linpath.engine.outputs import OutputFn, to_logits
from linpath.engine.params import check_hold, restrict, select
from linpath.engine.plane import Plane, plane_fingerprint, random_directions, through_three
from linpath.engine.scoring import classification_score
from linpath.engine.streamed import MIN_EXAMPLES, StreamedEvaluator
from linpath.engine.subsets import class_counts
from linpath.engine.tasks import Task, make_task
from linpath.errors import LinpathError
from linpath.io.checkpoints import find_state, fit_keys
from linpath.io.files import atomic_write_text
from linpath.io.hf_folder import ModelFolder, is_model_folder
from linpath.io.rundir import RunDir
from linpath.io.tables import csv_frame, csv_text, import_pandas
from linpath.io.tensors import load_state_dict, nonfinite_problem
from linpath.models.hf import from_folder
from linpath.runtime import distributed
from linpath.runtime.device import check_precision, resolve_device
from linpath.sweep.grids import Grid
from linpath.sweep.inputs import evaluation_subset
from linpath.sweep.merge import PATH_COLUMNS, format_rows, setting_rows
from linpath.train.log import LOG_COLUMNS

StateLike = Union[Mapping[str, torch.Tensor], str, os.PathLike, nn.Module]
DataLike = object  # (inputs, targets) tensors, a Dataset of pairs, a DataLoader of pairs, or an EvalSet
# (outputs, targets) -> the mean over the batch, like torch.nn.functional's losses
BatchFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "PathCurve",
    "Surface",
    "path",
    "plane",
    "random_plane",
    "align",
    "RunTables",
    "path",
    "load",
    "evaluate_curve",
    "evaluate_streamed",
    "endpoints",
    "fit_inputs",
    "load_state",
    "as_evalset",
    "make_score",
]
MAX_PLANE_SIDE = 1001  # points per side of a plane's grid (a million evaluations at most)


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
    # streamed evaluation (_streamed_path below): examples read at each x (they differ per x
    # under se_target), the task, and further per-x columns (causal-lm: perplexity, bits_per_byte, tokens)
    point_examples: np.ndarray | None = None
    task: str = "classification"
    quantities: dict[str, np.ndarray] | None = None

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
        examples = self.point_examples if self.point_examples is not None else [self.examples] * n
        extra = self.quantities or {}
        rows = []
        for i in range(n):
            fixed["examples"] = int(examples[i])
            row = [repr(float(columns[c][i])) if c in columns else fixed.get(c, "") for c in PATH_COLUMNS]
            rows.append(row + [_cell(extra[q][i]) for q in extra])
        return rows

    def columns(self) -> list[str]:
        """The table's columns: paths.csv's, then the task's further quantities."""
        return PATH_COLUMNS + list(self.quantities or {})

    def to_frame(self, replicate: int = 0, t: int = 0):
        """The curve as a pandas DataFrame, one row per x, in paths.csv's columns (so it
        concatenates with linpath.load(run).paths); needs pandas (linpath[pandas])."""
        return csv_frame(csv_text(self.columns(), self.rows(replicate, t)))

    def to_csv(self, path: str | os.PathLike, replicate: int = 0, t: int = 0) -> Path:
        """Write the curve as a paths.csv-style table (atomically)."""
        atomic_write_text(Path(path), csv_text(self.columns(), self.rows(replicate, t)))
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


def _cell(value) -> str | int:
    """A table cell: integers as they are, floats with repr (read back exactly)."""
    return int(value) if isinstance(value, (int, np.integer)) else repr(float(value))


def load_state(state: StateLike, name: str = "state", key: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict from a mapping, a module, or a file (loaded weights-only, never code).

    Files and mappings may wrap it (see io/checkpoints.py: {"state_dict": ...}, Lightning
    .ckpt, .safetensors, ...), or hold it at `key`, a dotted path such as "ema.model"."""
    if isinstance(state, nn.Module):
        return dict(state.state_dict())
    if isinstance(state, (str, os.PathLike)):
        return load_state_dict(Path(state), key)
    if isinstance(state, Mapping):
        return find_state(state, f"the {name}", key)
    raise LinpathError(
        f"the {name} must be a state dict, a module or a file path, got {type(state).__name__}"
    )


def _check_finite(state: dict, given: StateLike, name: str) -> None:
    if problem := nonfinite_problem(state):
        where = Path(given).name if isinstance(given, (str, os.PathLike)) else f"the {name}"
        raise LinpathError(
            f"{where}: {problem}; pass allow_nonfinite=True (--allow-nonfinite) to evaluate it"
        )


def endpoints(
    own: dict, start_state: StateLike, end_state: StateLike, key: str | None, allow_nonfinite: bool
):
    """The two states as the model's own state dict: keys fitted where the model's are known
    (a "module."/"model." prefix stripped), checked against each other and the model, and
    cast to the model's dtypes (the engine mixes in those, e.g. fp16 checkpoints, fp32 model)."""
    start = fit_keys(load_state(start_state, "start state", key), own)
    end = fit_keys(load_state(end_state, "end state", key), own)
    check_compatible(start, end, "the start state", "the end state")
    if not allow_nonfinite:
        _check_finite(start, start_state, "start state")
        _check_finite(end, end_state, "end state")
    check_compatible(own, start, "the model", "the start state")
    start = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in start.items()}
    end = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in end.items()}
    return start, end


def fit_inputs(
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

    Defaults: mean cross-entropy, and 1 - accuracy when the targets are class indices."""
    if loss_fn is None and error_fn is None and classification:
        return classification_score

    def batch_mean(fn: BatchFn, outputs: torch.Tensor, targets: torch.Tensor, what: str) -> torch.Tensor:
        value = torch.as_tensor(fn(outputs, targets))
        if value.numel() != 1:
            raise LinpathError(
                f"{what} must return the mean over the batch (one number), got shape {tuple(value.shape)}"
            )
        return value.double().reshape(())

    def score(outputs: torch.Tensor, targets: torch.Tensor):
        n = len(targets)
        loss = batch_mean(loss_fn or F.cross_entropy, outputs, targets, "loss_fn") * n
        if error_fn is not None:
            errors = batch_mean(error_fn, outputs, targets, "error_fn") * n
        elif classification:
            errors = (outputs.argmax(1) != targets).sum()
        else:
            errors = math.nan
        return loss, errors

    return score


def _grid_xs(grid: int | Grid | Sequence[float]) -> list[float]:
    if isinstance(grid, bool):
        raise LinpathError(f"grid must be a number of points, a Grid or a list of x, got {grid!r}")
    if isinstance(grid, int):
        return Grid(points=grid).xs()
    if isinstance(grid, Grid):
        return grid.xs()
    xs = [float(x) for x in grid]
    if not xs or not all(math.isfinite(x) for x in xs):
        raise LinpathError("grid must hold at least one finite x")
    return xs


def _default_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


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
    """Evaluate loss (and error) along θ(x) = (1 - x)·start + x·end.

    model        any nn.Module whose state dict matches the states; it is not modified (a copy
                 is evaluated).
    start_state, end_state
                 state dicts, modules, or files: torch.save(model.state_dict(), ...), the
                 {"state_dict"|"model_state_dict"|"model": state, ...} wrappers, Lightning .ckpt,
                 .safetensors; a prefix the model's keys lack ("module.", "model.") is stripped.
                 Files are loaded weights-only. `key`: a dotted path to the state dict in
                 anything else (e.g. "ema.state_dict").
    data         (inputs, targets) tensors, a Dataset of pairs, or a DataLoader of pairs.
    grid         a number of evenly spaced points in [0, 1] (ends included), a Grid (e.g.
                 linpath.sweep.grids.parse_grid("adaptive")), or x values.
    bn           "interpolate" (BatchNorm statistics mixed with the weights, the paper's) or
                 "recompute" (re-estimated at each x from up to `bn_batches` batches of
                 `bn_batch_size` inputs of `bn_data`, by default the evaluation inputs).
    loss_fn      (outputs, targets) -> batch-mean loss; default cross-entropy.
    error_fn     (outputs, targets) -> batch-mean error; default 1 - accuracy when the targets
                 are class indices, else no error (curve.error is None).
    output_fn    the model's output -> logits (what loss_fn takes); by default a tensor as is,
                 a dict's "logits" (else its only tensor), a tuple's first element, `.logits`.
    device       default: the model's device. precision "fp32" or "bf16" (autocast).
    batch_size   examples per forward pass; default the engine's: on a CPU 2,000 for fully
                 connected networks, 256 for convnets; on CUDA 10,000 and 1,024.
    allow_nonfinite
                 evaluate states holding NaN or inf (refused by default, naming the tensor).
    params       move only these tensors (engine/params.py: "fc1.*", "fc*.bias", "weights",
                 "biases", "bn", "layer:fc1", comma-separated for a union); the others stay at
                 the `hold` endpoint, "end" (default, Vlaar & Frankle's) or "start".
    eval_examples
                 evaluate on a fixed class-stratified subset of this many examples (the
                 sweep's --eval-examples; class-index targets only): the curve's loss_se and
                 error_se are then the standard errors of its values as estimates of the
                 whole data's. Default: all of the data (standard errors 0).
    task         "classification" (default) or "causal-lm": mean next-token cross-entropy over
                 the targets that are not -100 (Hugging Face's labels), next-token error, and
                 curve.quantities["perplexity"], ["bits_per_byte"] (where the data gives byte
                 counts), ["tokens"].
    se_target    stop each point's evaluation once the loss's standard error is at most this
                 (after min_examples units: examples, or sequences for causal-lm); the units
                 read are curve.point_examples.
    shard        (rank, size): this process reads every size-th batch, from the rank-th on;
                 default the torchrun world's, whose sums are added over ranks (without a
                 process group the curve is this share's alone).
    Model folders (config.json and *.safetensors shards) as states, a model folder as `model`
    (built with transformers), a task, se_target, or streamed data (an IterableDataset, a
    DataLoader over one, linpath.data.stream's TextBlocks) use the streamed evaluator: the
    states stay on disk and the data is read a batch at a time (see _streamed_path).
    """
    if _is_streamed(model, start_state, end_state, data, task, se_target):
        return _streamed_path(model, start_state, end_state, data, grid, locals())
    if not isinstance(model, nn.Module):
        raise LinpathError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_hold(hold)
    if params is None and hold != "end":
        raise LinpathError("hold only applies with params (without it every tensor moves)")
    check_bn_policy(bn)
    check_precision(precision)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
        raise LinpathError(f"batch_size must be a positive integer, got {batch_size!r}")
    xs = grid if isinstance(grid, Grid) else _grid_xs(grid)
    if device is None:
        dev = _default_device(model)
    else:
        dev = resolve_device(str(device))

    work = copy.deepcopy(model)
    start, end = endpoints(work.state_dict(), start_state, end_state, key, allow_nonfinite)
    if params is not None:
        start, end = restrict(start, end, select(params, work), hold)
    evalset = fit_inputs(work, as_evalset(data, dev, batch_size or 1000), dev, output_fn)
    evalset, population = _subset(evalset, eval_examples)
    batches = None
    if bn == "recompute":
        source = evalset if bn_data is None else as_evalset(bn_data, dev, batch_size or 1000)
        batches = [inputs for inputs, _ in source.batches(bn_batch_size)][:bn_batches]
    return evaluate_curve(
        work,
        start,
        end,
        evalset,
        xs,
        bn=bn,
        loss_fn=loss_fn,
        error_fn=error_fn,
        batch_size=batch_size,
        precision=precision,
        bn_batches=batches,
        output_fn=output_fn,
        population=population,
    )


# --- streamed evaluation (language models, model folders, data that does not fit) -------------
# Called from path(); the engine is engine/streamed.py, the states engine/lazy_states.py.

STREAM_UNSUPPORTED = {"params": None, "eval_examples": None, "bn_data": None, "bn": "interpolate"}


def _is_streamed(model, start_state, end_state, data, task: str, se_target) -> bool:
    """Whether path() uses the streamed evaluator (see path()'s docstring)."""
    folders = any(is_model_folder(s) for s in (model, start_state, end_state))
    return task != "classification" or se_target is not None or folders or is_stream(data)


def _streamed_path(model, start_state, end_state, data, grid, options: dict) -> PathCurve:
    """path() on the streamed evaluator; `options` are path()'s arguments."""
    for name, default in STREAM_UNSUPPORTED.items():
        if options[name] != default:
            raise LinpathError(f"{name}={options[name]!r} is not supported with streamed evaluation")
    xs = grid if isinstance(grid, Grid) else _grid_xs(grid)
    work = _working_model(model, options["task"])
    dev = _default_device(work) if options["device"] is None else resolve_device(str(options["device"]))
    stream = as_stream(data, options["batch_size"] or (8 if options["task"] == "causal-lm" else 256), dev)
    passed = ("task", "loss_fn", "error_fn", "output_fn", "precision", "se_target", "min_examples", "shard")
    passed += ("key", "allow_nonfinite")
    return evaluate_streamed(work, start_state, end_state, stream, xs, dev, **{k: options[k] for k in passed})


def evaluate_streamed(
    work: nn.Module,
    start_state: StateLike,
    end_state: StateLike,
    stream,
    xs: Sequence[float] | Grid,
    device: torch.device,
    task: str = "classification",
    loss_fn: BatchFn | None = None,
    error_fn: BatchFn | None = None,
    output_fn: OutputFn | None = None,
    precision: str = "fp32",
    se_target: float | None = None,
    min_examples: int = MIN_EXAMPLES,
    shard: tuple[int, int] | None = None,
    key: str | None = None,
    allow_nonfinite: bool = False,
    on_points: Callable[[int], None] | None = None,
) -> PathCurve:
    """path()'s streamed evaluation after its conversions, for callers that hold a model of their
    own (`linpath path`): `work` is overwritten in place (no copy: one model in memory), `stream`
    is a data.stream Stream; the other arguments are path()'s."""
    classification = loss_fn is None or error_fn is None
    if classification and task == "classification":
        first = next(iter(stream.batches()), None)
        classification = first is not None and is_classification(first.targets)
    scorer = make_task(task, loss_fn, error_fn, classification)
    evaluator = StreamedEvaluator(
        work, stream, scorer, device, precision, output_fn, se_target, min_examples, shard
    )
    states, names = _lazy_endpoints(work, start_state, end_state, key, allow_nonfinite, device)
    mix = StateMix(work, states, names)
    on_point = (lambda: on_points(1)) if on_points is not None else None
    if isinstance(xs, Grid):
        xs, results = xs.run(lambda chunk: evaluator.evaluate_path(mix, chunk, on_point))
    else:
        results = evaluator.evaluate_path(mix, [float(x) for x in xs], on_point)
    return stream_curve(xs, results, scorer, stream.name, precision)


def _working_model(model, task: str) -> nn.Module:
    """The model to overwrite: built from a model folder's config.json, else a copy of `model`."""
    if isinstance(model, (str, os.PathLike)):
        return from_folder(model, task)
    if not isinstance(model, nn.Module):
        raise LinpathError(f"model must be a torch.nn.Module or a model folder, got {type(model).__name__}")
    return copy.deepcopy(model)


def _lazy_endpoints(
    work: nn.Module, start_state, end_state, key, allow_nonfinite, dev
) -> tuple[list, list[str]]:
    """The two states for a StateMix: model folders read lazily; other states loaded as path()
    loads them (fitted, checked, cast) and moved to the device once."""
    given = [(start_state, "the start state"), (end_state, "the end state")]
    names = [f"{name} ({Path(s).name})" if is_model_folder(s) else name for s, name in given]
    if not any(is_model_folder(s) for s, _ in given):
        pair = endpoints(work.state_dict(), start_state, end_state, key, allow_nonfinite)
        return [DictState(state, dev) for state in pair], names
    own = work.state_dict()
    states = [
        ModelFolder(s) if is_model_folder(s) else DictState(fit_keys(load_state(s, name, key), own), dev)
        for s, name in given
    ]
    if not allow_nonfinite:
        check_finite_states(states, names)
    return states, names


def stream_curve(xs, results: list, task: Task, split: str, precision: str) -> PathCurve:
    """A PathCurve of the streamed evaluator's results (engine/streamed.py's StreamResult)."""

    def column(name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in results], dtype=float)

    quantities = None
    if task.name == "causal-lm":
        tokens = np.array([r.targets for r in results], dtype=np.int64)
        quantities = {
            "perplexity": column("perplexity"),
            "bits_per_byte": column("bits_per_byte"),
            "tokens": tokens,
        }
    examples = np.array([r.examples for r in results], dtype=int)
    return PathCurve(
        x=np.array(xs, dtype=float),
        loss=column("loss"),
        error=column("error") if task.has_error else None,
        examples=int(examples.max()),
        precision=precision,
        split=split,
        loss_se=column("loss_se"),
        error_se=column("error_se") if task.has_error else None,
        point_examples=examples,
        task=task.name,
        quantities=quantities,
    )


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
) -> PathCurve:
    """path() after its conversions: `model` is overwritten in place, `evalset` is on the
    device, `bn_batches` are input tensors. For callers that hold these already (spawn.py,
    `linpath path`). `xs` may be a Grid (adaptive grids refine where the curve peaks);
    `population` holds the split's class counts when `evalset` is a stratified subset of it
    (standard errors, as in the sweep); `on_points(n)` is called after every n points."""
    classification = is_classification(evalset.labels)
    score = make_score(loss_fn, error_fn, classification)
    engine = PathEvaluator(
        model,
        evalset,
        batch_size=batch_size,
        precision=precision,
        score=score,
        output_fn=output_fn,
        population=population,
    )
    path = engine.path(start, end, bn=bn, bn_batches=bn_batches)
    if isinstance(xs, Grid):
        xs, results = xs.run(lambda chunk: _evaluate_in_steps(path, chunk, on_points))
    else:
        results = _evaluate_in_steps(path, [float(x) for x in xs], on_points)
    has_error = error_fn is not None or classification
    return PathCurve(
        x=np.array(xs, dtype=float),
        loss=np.array([r.loss for r in results], dtype=float),
        error=np.array([r.error for r in results], dtype=float) if has_error else None,
        examples=len(evalset),
        bn=bn,
        precision=precision,
        split=evalset.name,
        loss_se=np.array([r.loss_se for r in results], dtype=float),
        error_se=np.array([r.error_se for r in results], dtype=float) if has_error else None,
    )


PROGRESS_STEP = 10  # points per progress report


def _evaluate_in_steps(path, xs: list[float], on_points) -> list:
    """path.evaluate(xs), in steps of PROGRESS_STEP points when progress is reported (the
    endpoints' stem outputs are computed once and kept across the steps)."""
    if on_points is None:
        return path.evaluate(xs)
    results = []
    for i in range(0, len(xs), PROGRESS_STEP):
        results += path.evaluate(xs[i : i + PROGRESS_STEP])
        on_points(len(xs[i : i + PROGRESS_STEP]))
    return results


def _plane_axes(grid, span) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, betas) from grid = n or (n_alpha, n_beta) and span = (lo, hi) for both axes or
    ((lo_alpha, hi_alpha), (lo_beta, hi_beta))."""
    counts = (grid, grid) if isinstance(grid, int) and not isinstance(grid, bool) else tuple(grid)
    spans = (span, span) if len(span) == 2 and not isinstance(span[0], (tuple, list)) else tuple(span)
    if len(counts) != 2 or len(spans) != 2:
        raise LinpathError(f"grid must be n or (n_alpha, n_beta) and span (lo, hi); got {grid!r}, {span!r}")
    axes = []
    for n, (lo, hi) in zip(counts, spans):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PLANE_SIDE:
            raise LinpathError(
                f"each side of the plane's grid must be 1 to {MAX_PLANE_SIDE} points, got {n!r}"
            )
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise LinpathError(f"span must be finite with lo < hi, got ({lo}, {hi})")
        axes.append(np.linspace(lo, hi, n))
    return axes[0], axes[1]


def _prepared_states(model: nn.Module, given: dict[str, StateLike], allow_nonfinite: bool) -> dict[str, dict]:
    """Each named state loaded, checked against the model and cast to the model's float dtypes."""
    own = model.state_dict()
    states = {}
    for name, state_like in given.items():
        if is_model_folder(state_like):  # read whole, tied keys filled (engine/lazy_states.py)
            state = full_state(model, ModelFolder(state_like), f"the {name} ({Path(state_like).name})")
        else:
            state = load_state(state_like, name)
        check_compatible(own, state, "the model", f"the {name}")
        if not allow_nonfinite:
            _check_finite(state, state_like, name)
        states[name] = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    return states


def _evaluate_plane(work, origin, d_a, d_b, data, grid, span, options) -> tuple:
    """The plane's (alphas, betas, loss, error or None, evalset) on `work` (overwritten), with
    api options (loss_fn, device, ...); evaluated a β row at a time, each kept in
    options["rows_file"] when given, so that an interrupted plane resumes there and processes
    given options["shard"] share the rows (see _plane_rows)."""
    alphas, betas = _plane_axes(grid, span)
    shard = _check_shard(options["shard"], options["rows_file"])
    dev = _default_device(work) if options["device"] is None else resolve_device(str(options["device"]))
    check_precision(options["precision"])
    evalset = fit_inputs(work, as_evalset(data, dev, options["batch_size"] or 1000), dev)
    classification = is_classification(evalset.labels)
    score = make_score(options["loss_fn"], options["error_fn"], classification)
    engine = PathEvaluator(
        work, evalset, batch_size=options["batch_size"], precision=options["precision"], score=score
    )
    plane = Plane(engine, origin, d_a, d_b)
    store = None
    if options["rows_file"] is not None:
        fingerprint = plane_fingerprint(plane.origin, plane.d_a, plane.d_b, evalset.inputs, evalset.labels)
        store = PlaneRows(options["rows_file"], alphas, betas, fingerprint + options["precision"])
    loss, error = _plane_rows(plane, alphas, betas, store, shard, options["progress"])
    has_error = options["error_fn"] is not None or classification
    return alphas, betas, loss, error if has_error else None, evalset


def _check_shard(shard, rows_file) -> tuple[int, int]:
    """shard = (rank, ranks) checked; processes sharing a plane meet only in its row files, so
    more than one rank needs a rows_file."""
    try:
        rank, ranks = shard
    except (TypeError, ValueError):
        rank = ranks = None
    integers = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (rank, ranks))
    if not integers or not 0 <= rank < ranks:
        raise LinpathError(f"shard must be (rank, ranks) with 0 <= rank < ranks, got {shard!r}")
    if ranks > 1 and rows_file is None:
        raise LinpathError(
            f"shard={shard!r} needs a rows_file: processes share a plane through its row files"
        )
    return rank, ranks


def _my_rows(unfinished: list[int], shard: tuple[int, int]) -> list[int]:
    """This process's share of the unfinished rows. Under a process group (torchrun) every
    size-th of rank 0's list, so that a resumed plane's remaining rows are spread evenly and
    the ranks agree even while row files appear; separate processes without one take the rows
    i with i % ranks == rank, a split fixed by the grid whatever each has read."""
    rank, ranks = shard
    if ranks == 1:
        return unfinished
    if distributed.is_initialized():
        return distributed.broadcast_if_initialized(unfinished)[rank::ranks]
    return [i for i in unfinished if i % ranks == rank]


def _plane_rows(plane, alphas, betas, store, shard, progress) -> tuple[np.ndarray, np.ndarray]:
    """(loss, error) arrays [i_beta, i_alpha]: this process evaluates its share of the
    unfinished rows (_my_rows); the rows come back from `store` when there is one."""
    ranks = shard[1]
    rows = {}
    unfinished = [i for i in range(len(betas)) if store is None or store.row(i) is None]
    for i in _my_rows(unfinished, shard):
        beta = betas[i]
        results = plane.evaluate(alphas, [beta])[0]
        rows[i] = [r.loss for r in results], [r.error for r in results]
        if store is not None:
            store.save(i, *rows[i], table=ranks == 1)  # shared: the table is merged at the end
        if progress is not None:
            progress(i + 1, len(betas))
    if store is not None:
        rows = _every_row(store, shard)
    loss, error = (np.array([rows[i][k] for i in range(len(betas))], dtype=float) for k in (0, 1))
    return loss, error


def _every_row(store: PlaneRows, shard: tuple[int, int]) -> dict:
    """Every row of a plane kept in `store`, and its merged table written. Processes sharing
    the plane first wait for one another (a barrier when torch.distributed is initialized;
    separate processes without one see only the rows already finished) and read all row files
    again; a row still missing is an error naming where it should be."""
    rank, ranks = shard
    if ranks > 1:
        distributed.barrier_if_initialized()
        store.reload()
    missing = store.missing()
    if missing:
        raise LinpathError(
            f"{len(missing)} of {len(store.beta)} rows of the plane are not finished "
            f"(first: {store.row_file(missing[0])}) after shard {rank} of {ranks}: run the other "
            "shards, or rerun with one process to finish them"
        )
    store.write_table()
    return store.rows


def _plane_of(model, given: dict, directions, marks, allow_nonfinite, data, grid, span, options) -> Surface:
    """The body of plane() and random_plane(): the `given` states prepared on a copy of
    `model`, directions(states) -> (origin, d_a, d_b), the grid evaluated with the api
    `options` (loss_fn, device, precision, rows_file, shard, ...), the states marked at `marks`."""
    if not isinstance(model, nn.Module):
        raise LinpathError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    work = copy.deepcopy(model)
    origin, d_a, d_b = directions(_prepared_states(work, given, allow_nonfinite))
    alphas, betas, loss, error, evalset = _evaluate_plane(work, origin, d_a, d_b, data, grid, span, options)
    return Surface(alphas, betas, loss, error, len(evalset), marks, evalset.name, options["precision"])


def plane(
    model: nn.Module,
    origin: StateLike,
    a: StateLike,
    b: StateLike,
    data: DataLike,
    grid: int | tuple[int, int] = (21, 21),
    span: tuple = (-0.5, 1.5),
    loss_fn: BatchFn | None = None,
    error_fn: BatchFn | None = None,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    allow_nonfinite: bool = False,
    rows_file: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Surface:
    """Loss (and error) on the plane through three states (Goodfellow et al. 2015):
    θ(α, β) = θ_o + α(θ_a - θ_o) + β(θ_b - θ_o), so θ_o, θ_a, θ_b sit at (0,0), (1,0), (0,1).

    grid is n or (n_alpha, n_beta) evenly spaced points over span = (lo, hi) (both axes) or
    ((lo_alpha, hi_alpha), (lo_beta, hi_beta)). BatchNorm statistics are mixed like the
    weights. rows_file (a CSV) keeps each finished row of β so that a rerun of the same plane
    resumes; progress(row, rows) is called after each row evaluated. shard = (rank, ranks)
    shares the plane among processes (torchrun ranks) through rows_file: this one evaluates
    its share of the unfinished rows (see _my_rows), waits for the others (a barrier when
    torch.distributed is initialized) and returns the whole surface. The other arguments are
    path()'s. Returns a Surface (arrays [i_beta, i_alpha])."""

    def through_given(states: dict) -> tuple[dict, dict, dict]:
        return states["origin"], *through_three(states["origin"], states["state a"], states["state b"])

    return _plane_of(
        model,
        {"origin": origin, "state a": a, "state b": b},
        through_given,
        ((0.0, 0.0, "origin"), (1.0, 0.0, "a"), (0.0, 1.0, "b")),
        allow_nonfinite,
        data,
        grid,
        span,
        dict(
            loss_fn=loss_fn,
            error_fn=error_fn,
            device=device,
            batch_size=batch_size,
            precision=precision,
            rows_file=rows_file,
            progress=progress,
            shard=shard,
        ),
    )


def random_plane(
    model: nn.Module,
    center: StateLike,
    data: DataLike,
    grid: int | tuple[int, int] = (21, 21),
    span: tuple = (-1.0, 1.0),
    seed: int = 0,
    loss_fn: BatchFn | None = None,
    error_fn: BatchFn | None = None,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    allow_nonfinite: bool = False,
    rows_file: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Surface:
    """Loss (and error) around one state along two random filter-normalized directions (Li et
    al. 2018): θ(α, β) = θ_c + α·δ + β·η, each filter of δ and η scaled to the norm of θ_c's
    filter, biases and BatchNorm entries not moved (loss-landscape's ignore='biasbn'). The
    directions are a pure function of `seed`; the other arguments are plane()'s."""

    def around_center(states: dict) -> tuple[dict, dict, dict]:
        return states["center"], *random_directions(states["center"], seed)

    return _plane_of(
        model,
        {"center": center},
        around_center,
        ((0.0, 0.0, "center"),),
        allow_nonfinite,
        data,
        grid,
        span,
        dict(
            loss_fn=loss_fn,
            error_fn=error_fn,
            device=device,
            batch_size=batch_size,
            precision=precision,
            rows_file=rows_file,
            progress=progress,
            shard=shard,
        ),
    )


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
        a, b = fit_keys(a, own), fit_keys(b, own)
        check_compatible(own, a, "the model", "state a")
        check_compatible(own, b, "the model", "state b")
    return align_states(a, b, model, seed=seed)


@dataclass(frozen=True)
class RunTables:
    """A run folder's tables as tidy pandas DataFrames (see load)."""

    root: Path
    spec: Spec
    paths: object  # every finished point, all settings: setting + paths.csv's columns
    metrics: object  # per replicate, t, quantity: results/<setting>/metrics.csv, all settings
    summary: object  # aggregates over replicates: results/<setting>/summary.csv, all settings
    train_log: object  # replicate + train_log.csv's columns, all replicates


def _concat(frames: list, columns: list[str]):
    """One frame of many, or an empty one with `columns` (pandas cannot concatenate none)."""
    if not frames:
        return csv_frame(csv_text(columns, []))
    return import_pandas().concat(frames, ignore_index=True)


def _setting_tables(run: RunDir, name: str, columns: list[str]):
    """results/<setting>/<name> of every setting, concatenated, each with its setting column."""
    folders = sorted(p for p in (run.root / "results").glob("*") if (p / name).is_file())
    return _concat([csv_frame((p / name).read_text(), setting=p.name) for p in folders], columns)


def load(run_dir: str | os.PathLike) -> RunTables:
    """A run folder's results as tidy DataFrames, for analysis in pandas (needs linpath[pandas]).

    paths is rebuilt from the finished item files of every sweep setting (as paths.csv is),
    so it is complete even while a sweep runs; metrics and summary are those the last
    `linpath report` wrote; train_log holds every replicate's per-epoch log."""
    run = RunDir(run_dir)
    spec = read_spec(run)
    paths = _concat(
        [csv_frame(format_rows(setting_rows(run, s)), setting=s) for s in settings_of(run)],
        ["setting", *PATH_COLUMNS],
    )
    logs = sorted(
        (int(p.parent.name.rpartition("-")[2]), p)
        for p in run.root.glob("replicate-*/train_log.csv")
        if p.parent.name.rpartition("-")[2].isdigit()
    )
    train_log = _concat([csv_frame(p.read_text(), replicate=r) for r, p in logs], ["replicate", *LOG_COLUMNS])
    return RunTables(
        run.root,
        spec,
        paths,
        _setting_tables(run, "metrics.csv", REPLICATE_COLUMNS),
        _setting_tables(run, "summary.csv", SUMMARY_COLUMNS),
        train_log,
    )
