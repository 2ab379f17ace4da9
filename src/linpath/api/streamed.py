"""Streamed paths: language models, model folders and data that does not fit on the device.

path() hands a job here when a state or the model is a model folder (config.json and
*.safetensors shards), the task is "causal-lm", a standard-error target stops each point early,
or the data is an iterable (an IterableDataset, data.stream's TextBlocks): the states stay on
disk and are written into the one resident model a tensor at a time (engine/lazy_states.py),
and the data is read a batch at a time (engine/streamed.py)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
from torch import nn

from linpath.api.curve import PathCurve
from linpath.api.inputs import default_device, is_classification
from linpath.api.options import PathOptions
from linpath.api.states import StateLike, endpoints, load_state
from linpath.data.stream import as_stream, is_stream
from linpath.engine.curvature import streamed_points
from linpath.engine.lazy_states import DictState, StateMix, check_finite_states
from linpath.engine.streamed import StreamedEvaluator
from linpath.engine.tasks import Task, make_task
from linpath.errors import LinpathError
from linpath.io.checkpoints import match_keys
from linpath.io.hf_folder import ModelFolder, is_model_folder
from linpath.models.hf import from_folder
from linpath.runtime.device import resolve_device
from linpath.sweep.setting import SweepSetting


def is_streamed(model, start_state, end_state, data, setting: SweepSetting) -> bool:
    """Whether a path job uses the streamed evaluator (see the module's docstring): the one
    place this choice is made."""
    folders = any(is_model_folder(s) for s in (model, start_state, end_state))
    return setting.streamed or folders or is_stream(data)


def streamed_path(
    model, start_state, end_state, data, setting: SweepSetting, options: PathOptions
) -> PathCurve:
    """The path job on the streamed evaluator: `model` a module (copied unless
    options.copy_model is False) or a model folder (its config.json builds the network)."""
    if problem := setting.streamed_problem():
        raise LinpathError(problem)
    work = _working_model(model, setting.task, options.copy_model)
    dev = default_device(work) if options.device is None else resolve_device(str(options.device))
    size = options.batch_size or (8 if setting.task == "causal-lm" else 256)
    stream = as_stream(data, size, dev)
    return evaluate_streamed(work.to(dev), start_state, end_state, stream, setting, options)


def evaluate_streamed(
    work: nn.Module,
    start_state: StateLike,
    end_state: StateLike,
    stream,
    setting: SweepSetting,
    options: PathOptions,
) -> PathCurve:
    """The streamed evaluation of `work` (overwritten in place: one model in memory, on its
    device) along the setting's grid, `stream` a data.stream Stream."""
    device = default_device(work)
    classification = options.loss_fn is None or options.error_fn is None
    if classification and setting.task == "classification":
        first = next(iter(stream.batches()), None)
        classification = first is not None and is_classification(first.targets)
    scorer = make_task(setting.task, options.loss_fn, options.error_fn, classification)
    evaluator = StreamedEvaluator(
        work, stream, scorer, device, setting.precision, options.output_fn, setting.se_target,
        setting.min_examples, options.shard,
    )  # fmt: skip
    states, names = _lazy_endpoints(
        work, start_state, end_state, options.key, options.allow_nonfinite, device
    )
    mix = StateMix(work, states, names)
    on_point = (lambda: options.on_points(1)) if options.on_points is not None else None
    xs, results = setting.grid.run(lambda chunk: evaluator.evaluate_path(mix, chunk, on_point))
    curve = stream_curve(xs, results, scorer, stream.name, setting.precision)
    if options.curvature is not None:
        if options.curvature.at:
            raise LinpathError("eigenvalues and traces (--curvature-at) are not supported on streamed paths")
        moving = options.curvature.moving or "path"
        curve = curve.with_curvature(streamed_points(evaluator, mix, [float(x) for x in curve.x], moving))
    return curve.with_population(stream.length)


def _working_model(model, task: str, copy_model: bool = True) -> nn.Module:
    """The model to overwrite: built from a model folder's config.json, else `model` (a copy
    unless the caller made it for this job)."""
    if isinstance(model, (str, os.PathLike)):
        return from_folder(model, task)
    if not isinstance(model, nn.Module):
        raise LinpathError(f"model must be a torch.nn.Module or a model folder, got {type(model).__name__}")
    return copy.deepcopy(model) if copy_model else model


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
        ModelFolder(s) if is_model_folder(s) else DictState(match_keys(load_state(s, name, key), own), dev)
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
