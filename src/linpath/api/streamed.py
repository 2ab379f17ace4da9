"""Streamed paths: language models, model folders and data that does not fit on the device.

path() hands a job here when a state or the model is a model folder (config.json and
*.safetensors shards), the task is "causal-lm", a standard-error target stops each point early,
or the data is an iterable (an IterableDataset, data.stream's TextBlocks): the states stay on
disk and are written into the one resident model a tensor at a time (engine/lazy_states.py),
and the data is read a batch at a time (engine/streamed.py)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from linpath.api.curve import PathCurve
from linpath.api.inputs import BatchFn, default_device, grid_xs, is_classification
from linpath.api.states import StateLike, endpoints, load_state
from linpath.data.stream import as_stream, is_stream
from linpath.engine.lazy_states import DictState, StateMix, check_finite_states
from linpath.engine.outputs import OutputFn
from linpath.engine.streamed import MIN_EXAMPLES, StreamedEvaluator
from linpath.engine.tasks import Task, make_task
from linpath.errors import LinpathError
from linpath.io.checkpoints import fit_keys
from linpath.io.hf_folder import ModelFolder, is_model_folder
from linpath.models.hf import from_folder
from linpath.runtime.device import resolve_device
from linpath.sweep.grids import Grid

STREAM_UNSUPPORTED = {"params": None, "eval_examples": None, "bn_data": None, "bn": "interpolate"}


def is_streamed(model, start_state, end_state, data, task: str, se_target) -> bool:
    """Whether path() uses the streamed evaluator (see path()'s docstring)."""
    folders = any(is_model_folder(s) for s in (model, start_state, end_state))
    return task != "classification" or se_target is not None or folders or is_stream(data)


def streamed_path(model, start_state, end_state, data, grid, options: dict) -> PathCurve:
    """path() on the streamed evaluator; `options` are path()'s arguments."""
    for name, default in STREAM_UNSUPPORTED.items():
        if options[name] != default:
            raise LinpathError(f"{name}={options[name]!r} is not supported with streamed evaluation")
    xs = grid if isinstance(grid, Grid) else grid_xs(grid)
    work = _working_model(model, options["task"])
    dev = default_device(work) if options["device"] is None else resolve_device(str(options["device"]))
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
