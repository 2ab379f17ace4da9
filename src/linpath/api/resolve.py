"""`linpath path`: the path between two saved states of any model, from files on disk."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import linpath.data as datasets
import linpath.models as models
from linpath.api.alignment import align
from linpath.api.curve import PathCurve
from linpath.api.inputs import as_evalset, fit_inputs, is_classification
from linpath.api.lines import evaluate_curve
from linpath.api.states import endpoints
from linpath.config.external import is_external
from linpath.config.presets import PRESETS
from linpath.config.spec import read_spec
from linpath.data.source import EvalSet
from linpath.engine.bn_stats import path_bn_policy
from linpath.engine.outputs import OutputFn
from linpath.engine.params import restrict, select
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tensors import load_tensors
from linpath.runtime.device import resolve_device
from linpath.runtime.progress import Progress
from linpath.sweep.evaluation import bn_batches, setting_subset
from linpath.sweep.external import ExternalInputs
from linpath.sweep.grids import Grid
from linpath.sweep.setting import SweepSetting


def find_run_spec(checkpoint: str | os.PathLike, needed: bool = True):
    """The spec of the linpath run folder holding `checkpoint`, or None when it is elsewhere, or
    in an external run's folder (whose spec builds neither model nor data) when not `needed`."""
    for folder in list(Path(checkpoint).resolve().parents)[:4]:
        if (folder / "spec.json").is_file():
            spec = read_spec(RunDir(folder), external_ok=not needed)
            return None if is_external(spec) else spec
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def import_callable(text: str, flag: str):
    """module:callable or file.py:callable, imported; one-line errors for what the user's code
    raises or lacks (`flag` names the option in them)."""
    module_name, _, attr = text.rpartition(":")
    if not module_name or not attr:
        raise LinpathError(f"{flag} {text!r}: write module:callable or file.py:callable")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise LinpathError(f"{flag}: no file {file}")
            spec = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except LinpathError:
        raise
    except Exception as e:  # the user's code: an ImportError, a SyntaxError, anything it raises
        raise LinpathError(f"{flag}: cannot import {module_name}: {_first_line(e)}") from None
    found = getattr(module, attr, None)
    if found is None or not callable(found):
        kind = "no" if found is None else f"a {type(found).__name__} {attr!r}, not a"
        raise LinpathError(
            f"{flag}: {module_name} has {kind} callable{'' if found is not None else f' {attr!r}'}"
        )
    return found


def resolve_model(text: str, num_classes: int | None) -> nn.Module:
    """--model: a preset or model name (linpath's models), or module:callable / file.py:callable
    returning an nn.Module (called with no arguments; a class is instantiated)."""
    name = PRESETS[text].spec.model.model if text in PRESETS else text
    if name in models.MODELS:
        if num_classes is None:
            raise LinpathError(f"--model {text} needs the number of classes: give --num-classes")
        return models.build(name, num_classes, seed=0)
    if ":" not in text:
        raise LinpathError(
            f"--model {text!r} is neither a preset or model ({', '.join(sorted(models.MODELS))}) "
            "nor module:callable"
        )
    factory = import_callable(text, "--model")
    try:
        model = factory()
    except Exception as e:
        raise LinpathError(f"--model: {text}() raised {_first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise LinpathError(f"--model: {text}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def resolve_output(text: str | None) -> OutputFn | None:
    """--output: module:callable mapping the model's output to logits (None: the default
    reading of engine.outputs, which handles tuples, dicts and `.logits`)."""
    if text is None:
        return None
    if ":" not in text:
        raise LinpathError(f"--output {text!r}: write module:callable or file.py:callable")
    return import_callable(text, "--output")


def load_data(text: str, data_root=None, split: str = "test", device="cpu") -> tuple[EvalSet, int | None]:
    """--data: a data set name (see linpath.data; read from --data-root) or a .pt file holding
    an (inputs, targets) pair or {"inputs": ..., "targets": ...} (loaded weights-only).
    Returns the evaluation set and its number of classes (None where unknown)."""
    if text in datasets.DATASETS:
        source = datasets.load(text, data_root)
        return source.eval_set(split, device), source.num_classes
    return tensor_file(text, "--data", device)


def tensor_file(text: str, flag: str, device) -> tuple[EvalSet, int | None]:
    if not Path(text).is_file():
        raise LinpathError(
            f"{flag} {text!r} is neither a data set ({', '.join(sorted(datasets.DATASETS))}) nor a file"
        )
    obj = load_tensors(Path(text))
    if isinstance(obj, dict) and set(obj) >= {"inputs", "targets"}:
        obj = (obj["inputs"], obj["targets"])
    if not (
        isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(o, torch.Tensor) for o in obj)
    ):
        raise LinpathError(f"{text} must hold an (inputs, targets) pair of tensors or a dict with those keys")
    evalset = as_evalset(tuple(obj), device)
    evalset.name = Path(text).stem
    if is_classification(evalset.labels) and int(evalset.labels.min()) < 0:
        raise LinpathError(f"{text}: class labels must be >= 0, found {int(evalset.labels.min())}")
    classes = int(evalset.labels.max()) + 1 if is_classification(evalset.labels) else None
    return evalset, classes


def normalization(data: str) -> str:
    """What `linpath path` does to the inputs of `data` before the model sees them."""
    if data in datasets.DATASETS:
        return f"{data}: {datasets.normalization_text(data)} (as its presets train)"
    return f"{Path(data).name}: none (the file's inputs are used as they are)"


@dataclass(frozen=True)
class PathOptions:
    """How `linpath path` finds and runs what it evaluates, besides the sweep setting."""

    data_root: str | None = None
    device: str = "auto"
    batch_size: int | None = None  # the engine's choice
    num_classes: int | None = None
    bn_data: str | None = None  # recompute: a data set (its training split) or a .pt file
    allow_nonfinite: bool = False
    align_end: bool = False
    key: str | None = None
    output: str | None = None
    progress: bool = False
    choose_bn: bool = False  # no policy asked for: path_bn_policy's (recompute on an aligned BatchNorm model)

    def __post_init__(self):
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or self.batch_size <= 0):
            raise LinpathError(f"--batch-size must be a positive integer, got {self.batch_size}")


@dataclass
class _Job:
    """Everything resolved from the files and names, ready to evaluate."""

    model_name: str
    data_name: str
    evalset: EvalSet
    population: torch.Tensor | None
    classes: int | None
    run_spec: object  # the spec of the run folder holding the start state, or None
    bn_batches: list | None = None
    bn_source: str = "-"


def _names(start, model: str | None, data: str | None):
    """(model, data, the run folder's spec): the run folder's model and data set stand in for
    the missing ones when the start state lies in one."""
    spec = find_run_spec(start, needed=model is None or data is None)
    for value, flag in ((model, "--model"), (data, "--data")):
        if value is None and spec is None:
            raise LinpathError(f"{flag} is needed: {start} is not inside a linpath run folder")
    return model or spec.model.model, data or spec.data.dataset, spec


def _bn_batches(job: _Job, setting: SweepSetting, options: PathOptions, dev) -> None:
    """The recompute policy's inputs, as the sweep takes them: the first --bn-batches training
    batches of the named data set (the run's seed and batch size when the start state lies in a
    run folder, else seed 0 and batch 128), or the first batches of a .pt file's inputs."""
    if setting.bn != "recompute":
        return
    name = options.bn_data or (job.data_name if job.data_name in datasets.DATASETS else None)
    if name is None:
        raise LinpathError(
            "--bn recompute needs --bn-data (recompute is also --align's default on a model with BatchNorm): "
            "a data set name (its training split is used) or a .pt file of (inputs, targets) to re-estimate "
            "BatchNorm statistics from"
        )
    seed, batch = (job.run_spec.train.seed, job.run_spec.data.batch_size) if job.run_spec else (0, 128)
    if name in datasets.DATASETS:
        data = datasets.load(name, options.data_root)
        job.bn_source = f"{name} training split, {setting.bn_batches} batches of {batch} (seed {seed})"
    else:
        data = tensor_file(name, "--bn-data", dev)[0]
    job.bn_batches = bn_batches(data, setting.bn_batches, batch, seed, dev)
    if name not in datasets.DATASETS:
        job.bn_source = f"{Path(name).name}, {len(job.bn_batches)} batches of up to {batch}"


def _prepare(start, model, data, setting: SweepSetting, options: PathOptions, dev) -> _Job:
    model_name, data_name, spec = _names(start, model, data)
    evalset, classes = load_data(data_name, options.data_root, setting.split, dev)
    subset, population = setting_subset(evalset, setting)
    if setting.eval_examples and population is None and setting.eval_examples < len(evalset):
        raise LinpathError("--eval-examples needs class labels (integer targets) to stratify by")
    return _Job(model_name, data_name, subset, population, classes, spec)


def setting_key(setting: SweepSetting, job: _Job) -> str:
    """The sweep's key for this setting; a .pt file's name stands where the split would be."""
    if job.data_name in datasets.DATASETS:
        return setting.key
    return setting.key_with_split(job.evalset.name)


def describe_file(file, other) -> str:
    """`file` with enough of its path to tell it from `other`: from the run folder down when it
    lies in one, else the shortest distinguishing tail (at least folder/name)."""
    path = Path(file).resolve()
    for folder in list(path.parents)[:4]:
        if (folder / "spec.json").is_file():
            return str(path.relative_to(folder.parent))
    mine, theirs = path.parts, Path(other).resolve().parts
    k = 2
    while k < len(mine) and mine[-k:] == theirs[-k:]:
        k += 1
    return str(Path(*mine[-k:]))


def _record(start, end, job: _Job, setting: SweepSetting, options: PathOptions, curve: PathCurve) -> dict:
    """The setting as recorded beside paths.csv (setting.json) and printed."""
    return {
        "setting": setting_key(setting, job),
        "start": str(start),
        "end": str(end),
        "model": job.model_name,
        "data": job.data_name,
        "split": job.evalset.name,
        "normalization": normalization(job.data_name),
        "grid": setting.grid.key,
        "points": len(curve.x),
        "precision": setting.precision,
        "eval_examples": setting.eval_examples or len(job.evalset),
        "population": int(job.population.sum()) if job.population is not None else len(job.evalset),
        "bn": setting.bn,
        "bn_batches": setting.bn_batches if setting.bn == "recompute" else None,
        "bn_data": job.bn_source if setting.bn == "recompute" else None,
        "aligned": options.align_end,
        "params": setting.params or None,
        "hold": setting.hold if setting.params else None,
    }


def write_outputs(out: Path, curve: PathCurve, record: dict, title: str) -> list[Path]:
    files = [curve.to_csv(out / "paths.csv")]
    atomic_write_text(out / "setting.json", json.dumps(record, indent=2) + "\n")
    metrics = {**record, "examples": curve.examples, **curve.metrics()}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    files += [out / "setting.json", out / "metrics.json"]
    fig = curve.plot(title=title)
    for ext in ("png", "pdf"):
        fig.savefig(out / f"path.{ext}", dpi=150, bbox_inches="tight")
        files.append(out / f"path.{ext}")
    return files


def points_progress(enabled: bool, total: int | None):
    """A callback counting evaluated points (runtime/progress.py); `total` None for adaptive
    grids. Returns (callback, close)."""
    if not enabled:
        return None, lambda: None
    bar = Progress("path", total, "net")
    of = f"/{total}" if total else ""
    return lambda n: bar.update(n, f"path: {bar.done + n}{of} points"), bar.close


def path_between_files(
    start: str | os.PathLike,
    end: str | os.PathLike,
    model: str | None = None,
    data: str | None = None,
    out: str | os.PathLike = "path-out",
    setting: SweepSetting | None = None,
    points: int | None = None,
    **options,
) -> tuple[PathCurve, list[Path]]:
    """`linpath path`: the path between two saved states under a sweep setting (the sweep's
    grid, subset, precision and BatchNorm policy), written to `out` as paths.csv (the sweep's
    columns), setting.json, metrics.json and path.png/.pdf. Without `model`/`data`, both come from
    the linpath run folder holding `start`. `points` is shorthand for a uniform grid; `options`
    are PathOptions' fields. Returns the curve and the files (setting.json: what was recorded)."""
    setting = setting or SweepSetting(grid=Grid(points=points or 100))
    opts = PathOptions(**options)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LinpathError(f"--out {out} is a file, not a folder")
    dev = resolve_device(opts.device)
    job = _prepare(start, model, data, setting, opts, dev)
    work = resolve_model(job.model_name, opts.num_classes or job.classes)  # a fresh model, ours to overwrite
    if opts.choose_bn:
        setting = dataclasses.replace(setting, bn=path_bn_policy(None, work, opts.align_end))
    _bn_batches(job, setting, opts, dev)
    end_state = align(start, end, work, key=opts.key) if opts.align_end else end
    start_sd, end_sd = endpoints(work.state_dict(), start, end_state, opts.key, opts.allow_nonfinite)
    if setting.params:
        start_sd, end_sd = restrict(start_sd, end_sd, select(setting.params, work), setting.hold)
    output_fn = resolve_output(opts.output)
    evalset = fit_inputs(work, job.evalset, dev, output_fn)
    total = None if setting.grid.kind == "adaptive" else len(setting.grid.xs())
    report, close = points_progress(opts.progress, total)
    try:
        curve = evaluate_curve(
            work,
            start_sd,
            end_sd,
            evalset,
            setting.grid,
            bn=setting.bn,
            batch_size=opts.batch_size,
            precision=setting.precision,
            bn_batches=job.bn_batches,
            output_fn=output_fn,
            population=job.population,
            on_points=report,
        )
    finally:
        close()
    record = _record(start, end, job, setting, opts, curve)
    title = (
        f"start: {describe_file(start, end)}\nend: {describe_file(end, start)}\n"
        f"{job.model_name}, {record['setting']}"
    )
    return curve, write_outputs(out, curve, record, title)


def external_inputs(
    model: str | None, data: str | None, data_root=None, split: str = "test", num_classes: int | None = None
) -> ExternalInputs | None:
    """None when neither is given (a preset's run: its spec builds both); else both, checked:
    the model is built once and run on two of the data's inputs, so a mismatch is one line."""
    if model is None and data is None:
        return None
    if model is None or data is None:
        raise LinpathError(
            "--model and --data go together: an external run needs the model to build (module:callable) "
            "and the data to evaluate on (a data set name or a .pt file of (inputs, targets))"
        )
    evalset, classes = load_data(data, data_root, split, "cpu")
    classes = num_classes or classes
    evalset = fit_inputs(resolve_model(model, classes), evalset, torch.device("cpu"))
    return ExternalInputs(lambda: resolve_model(model, classes), evalset, classes, data)
