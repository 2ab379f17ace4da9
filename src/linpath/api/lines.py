"""The path job: the paper's line on any model and states, from objects or from files.

    curve = linpath.path(model, "start.pt", "end.pt", (inputs, targets))
    curve.x, curve.loss, curve.error          # numpy arrays (error None for regression)
    curve.metrics()["loss"]["rise_over_start"]
    curve.plot("path.png")

One job serves every caller: path() builds a SweepSetting (what decides the numbers) and
PathOptions (how the job runs) from its keywords and calls evaluate_path(); `linpath path`
resolves its strings into the same objects (api/resolve.py) and calls it too. evaluate_path()
makes the one choice between the preloaded engine (the data materialized once on the device,
θ(x) written into one copy of the model: sweep/engine_entry.py) and the streamed one (model
folders, language models, a stopping rule: api/streamed.py).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch
from torch import nn

from linpath.api.alignment import align
from linpath.api.curve import PathCurve
from linpath.api.inputs import (
    BatchFn,
    DataLike,
    as_evalset,
    checked_inputs,
    default_device,
    grid_of,
    is_classification,
    make_score,
)
from linpath.api.options import CurvatureRequest, PathOptions
from linpath.api.states import StateLike, endpoints, located
from linpath.api.streamed import is_streamed, streamed_path
from linpath.data.source import EvalSet
from linpath.engine.bn_stats import DEFAULT_BN_BATCHES
from linpath.engine.outputs import OutputFn
from linpath.engine.streamed import MIN_EXAMPLES
from linpath.errors import LinpathError
from linpath.runtime.device import resolve_device
from linpath.runtime.threads import using
from linpath.sweep.engine_entry import bn_batches, line_curvature, line_job, setting_subset
from linpath.sweep.grids import Grid
from linpath.sweep.setting import SweepSetting


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
    setting: SweepSetting | None = None,
    threads: int | None = None,
    curvature=None,
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
    data go to api/streamed.py (shard = (rank, size), default the torchrun world's).

    A convenience over evaluate_path(): the keywords become one SweepSetting and PathOptions;
    `setting` gives the SweepSetting whole instead (every field, also those without a keyword).
    threads: torch's CPU threads for the call; curvature: True for dL/dx and uᵀHu at every x
    (curve.quantities), or a dict/CurvatureRequest with `at` for Hessian spectra (curve.spectra)."""
    keywords = dict(
        grid=grid, bn=bn, precision=precision, bn_batches=bn_batches, eval_examples=eval_examples,
        params=params, hold=hold, task=task, se_target=se_target, min_examples=min_examples,
    )  # fmt: skip
    setting = _setting(setting, keywords)
    options = PathOptions(
        device, batch_size, key, loss_fn, error_fn, output_fn, allow_nonfinite, bn_data, bn_batch_size,
        shard=shard, curvature=CurvatureRequest.of(curvature),
    )  # fmt: skip
    with using(threads):
        return evaluate_path(model, start_state, end_state, data, setting, options)


def _setting(setting: SweepSetting | None, keywords: dict) -> SweepSetting:
    """path()'s setting: the one given whole (its keywords left at their defaults), else the
    keywords' (grid as a number, Grid or x values; eval_examples None for the whole data)."""
    if setting is not None:
        if not isinstance(setting, SweepSetting):
            raise LinpathError(f"setting must be a linpath SweepSetting, got {type(setting).__name__}")
        defaults = {k: p.default for k, p in inspect.signature(path).parameters.items()}
        changed = [k for k, v in keywords.items() if v is not defaults[k] and v != defaults[k]]
        if changed:
            raise LinpathError(f"give {', '.join(changed)} in setting= or as keywords, not both")
        return setting
    grid, hold, params = keywords["grid"], keywords["hold"], keywords["params"]
    return SweepSetting(
        grid=grid_of(grid),
        bn=keywords["bn"],
        precision=keywords["precision"],
        bn_batches=keywords["bn_batches"],
        eval_examples=_eval_examples(keywords["eval_examples"]),
        params=_params(params, hold),
        hold=hold,
        task=keywords["task"],
        se_target=keywords["se_target"],
        min_examples=keywords["min_examples"],
    )


def _eval_examples(eval_examples: int | None) -> int:
    """path()'s eval_examples (None: the whole data) as the setting's field (0: the whole data)."""
    if eval_examples is None:
        return 0
    if isinstance(eval_examples, bool) or not isinstance(eval_examples, int) or eval_examples <= 0:
        raise LinpathError(f"eval_examples must be a positive integer, got {eval_examples!r}")
    return eval_examples


def _params(params: str | None, hold: str) -> str:
    if params is None and hold != "end":
        raise LinpathError("hold only applies with params (without it every tensor moves)")
    return params or ""


def evaluate_path(
    model, start: StateLike, end: StateLike, data, setting: SweepSetting, options: PathOptions = PathOptions()
) -> PathCurve:
    """The one path job: `setting` decides the numbers, `options` how the job runs. `model` is
    an nn.Module or a model folder; `data` anything path() takes, or a data.source.SourceSplit
    (a named data set's split, materialized or streamed as the job needs). States and a model
    folder may be addressed by revision (hf://ORG/NAME@step1000: api/states.located)."""
    model, start, end = located(model), located(start), located(end)
    if is_streamed(model, start, end, data, setting):
        if options.align_end or options.bn_data is not None:
            raise LinpathError(
                "align and bn_data (--align, --bn-data) are not supported with streamed evaluation"
            )
        return streamed_path(model, start, end, data, setting, options)
    if not isinstance(model, nn.Module):
        raise LinpathError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    dev = default_device(model) if options.device is None else resolve_device(str(options.device))
    work = copy.deepcopy(model) if options.copy_model else model
    if options.align_end:
        end = align(start, end, work, key=options.key)
    start_sd, end_sd = endpoints(work.state_dict(), start, end, options.key, options.allow_nonfinite)
    whole = as_evalset(data, dev, options.batch_size or 1000)
    evalset, population = _subset(checked_inputs(work, whole, dev, options.output_fn), setting)
    classification = is_classification(evalset.labels)
    job = line_job(
        work, evalset, setting, make_score(options.loss_fn, options.error_fn, classification),
        _recompute_inputs(setting, options, evalset, dev),
        batch_size=options.batch_size, output_fn=options.output_fn, population=population,
    )  # fmt: skip
    xs, results = job.curve(start_sd, end_sd, setting.grid, options.on_points)
    has_error = options.error_fn is not None or classification
    total = int(population.sum()) if population is not None else len(evalset)
    curve = PathCurve.of(xs, results, len(evalset), setting.bn, setting.precision, evalset.name, has_error)
    if options.curvature is not None:
        curve = with_curvature(curve, job, start_sd, end_sd, options.curvature)
    return curve.with_population(total)


def _subset(evalset: EvalSet, setting: SweepSetting) -> tuple[EvalSet, torch.Tensor | None]:
    """The setting's stratified subset of the evaluation data and the data's class counts."""
    if setting.eval_examples and not is_classification(evalset.labels):
        raise LinpathError(
            "eval_examples (--eval-examples) needs class-index targets: the subset is stratified by class"
        )
    return setting_subset(evalset, setting)


def _recompute_inputs(setting: SweepSetting, options: PathOptions, evalset: EvalSet, dev) -> list | None:
    """The recompute policy's batches (sweep/engine_entry.bn_batches), the same at every x."""
    if setting.bn != "recompute":
        return None
    data = options.bn_data
    if data is None:
        data = evalset
    elif not hasattr(data, "train_batches"):  # a data Source is read as the sweep reads it
        data = as_evalset(data, dev, options.batch_size or 1000)
    return bn_batches(data, setting.bn_batches, options.bn_batch_size, options.bn_seed, dev)


def with_curvature(curve: PathCurve, job, start: dict, end: dict, request: CurvatureRequest) -> PathCurve:
    """`curve` with the slope and the directional curvature at every x and, at request.at, the
    Hessian's top eigenvalues and trace, on the path job's own engine, subset and BatchNorm policy."""
    along = line_curvature(job, start, end, request.moving, request.examples)
    points = along.points([float(x) for x in curve.x])
    spectra = {}
    for x in request.at:
        spectrum, trace = along.spectrum(x, request.k, request.steps), along.trace(x, request.matvecs)
        spectra[float(x)] = {
            "eigenvalues": spectrum.eigenvalues,
            "residuals": spectrum.residuals,
            "lanczos_steps": spectrum.steps,
            "trace": trace.trace,
            "trace_se": trace.se,
            "trace_matvecs": trace.matvecs,
            "trace_method": trace.method,
        }
    return curve.with_curvature(points, spectra or None)
