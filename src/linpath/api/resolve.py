"""Strings into objects, once for every job: what the command line gives (a model name or
module:callable, a data argument, state files, model folders and run folders, an external
run's recipe) resolved into what the Python API takes. The command line uses it, and so can a
user holding file names; nothing here evaluates.

    inputs = path_inputs(PathArgs("init.pt", "final.pt", model="mnist_lenet_300_100", data="mnist"), setting)
    curve, files = write_path_folder(inputs, "path-out")     # api/path_folder.py
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import linpath.data as datasets
import linpath.models as models
from linpath.api.inputs import as_evalset, checked_inputs, is_classification
from linpath.api.options import CurvatureRequest, PathOptions
from linpath.api.planes import PlaneInputs, PlaneOptions
from linpath.api.states import located
from linpath.api.streamed import is_streamed
from linpath.config.external import is_external
from linpath.config.presets import PRESETS
from linpath.config.schedule import Schedule
from linpath.config.spec import read_spec
from linpath.config.steps import Step
from linpath.data.source import EvalSet, SourceSplit
from linpath.data.stream import TextBlocks, bytes_tokenizer
from linpath.engine.bn_stats import path_bn_policy
from linpath.engine.outputs import OutputFn
from linpath.errors import LinpathError
from linpath.io.grid_record import GridRecord
from linpath.io.hf_folder import is_model_folder
from linpath.io.rundir import RunDir
from linpath.io.tensors import folder_refusal, load_tensors
from linpath.models.hf import from_folder
from linpath.runtime.device import resolve_device
from linpath.sweep.external import ExternalInputs
from linpath.sweep.grid_sweep import GridData
from linpath.sweep.setting import SweepSetting

TEXT_SUFFIXES = (".jsonl", ".txt")  # --data read as text, tokenized in blocks (data/stream.py)
DEFAULT_SEQ_LEN = 1024  # tokens per block when the model's config names no maximum


def find_run_spec(checkpoint: str | os.PathLike, needed: bool = True):
    """The spec of the linpath run folder holding `checkpoint`, or None when it is elsewhere, or
    in an external run's folder (whose spec builds neither model nor data) when not `needed`."""
    for folder in list(Path(checkpoint).resolve().parents)[:4]:
        if RunDir(folder).spec_path.is_file():
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


def resolve_data(text: str, data_root=None, split: str = "test", task: str = "classification"):
    """--data: a data set name (see linpath.data; read from --data-root), as a SourceSplit that
    a job materializes or streams as it needs, or a .pt file holding an (inputs, targets) pair or
    {"inputs": ..., "targets": ...} (loaded weights-only). Returns it and its number of classes
    (None where unknown)."""
    if text in datasets.DATASETS:
        source = datasets.load(text, data_root)
        return SourceSplit(source, split), source.num_classes
    return tensor_file(text, "--data", "cpu", task)


def load_data(text: str, data_root=None, split: str = "test", device="cpu") -> tuple[EvalSet, int | None]:
    """resolve_data's data materialized on `device` (planes and external runs preload)."""
    data, classes = resolve_data(text, data_root, split)
    return as_evalset(data, device), classes


def tensor_file(text: str, flag: str, device, task: str = "classification") -> tuple[EvalSet, int | None]:
    """A .pt file of (inputs, targets) as an EvalSet named after the file, and its number of
    classes; negative class labels are refused, but for causal-lm, whose -100 is unscored."""
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
    if not is_classification(evalset.labels) or task != "classification":
        return evalset, None
    if int(evalset.labels.min()) < 0:
        raise LinpathError(f"{text}: class labels must be >= 0, found {int(evalset.labels.min())}")
    return evalset, int(evalset.labels.max()) + 1


def describe_file(file, other) -> str:
    """`file` with enough of its path to tell it from `other`: from the run folder down when it
    lies in one, else the shortest distinguishing tail (at least folder/name)."""
    path = Path(file).resolve()
    for folder in list(path.parents)[:4]:
        if RunDir(folder).spec_path.is_file():
            return str(path.relative_to(folder.parent))
    mine, theirs = path.parts, Path(other).resolve().parts
    k = 2
    while k < len(mine) and mine[-k:] == theirs[-k:]:
        k += 1
    return str(Path(*mine[-k:]))


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
    evalset = checked_inputs(resolve_model(model, classes), evalset, torch.device("cpu"))
    return ExternalInputs(lambda: resolve_model(model, classes), evalset, classes, data)


@dataclass(frozen=True)
class PathArgs:
    """`linpath path`'s strings and switches, before resolution (see path_inputs)."""

    start: str
    end: str
    model: str | None = None  # a preset or model name, module:callable; default the run's or the folder's
    data: str | None = None  # a data set name, a .pt file, a text file; default the run's data set
    num_classes: int | None = None
    key: str | None = None
    output: str | None = None
    data_root: str | None = None
    device: str = "cpu"
    batch_size: int | None = None
    bn_data: str | None = None  # recompute: a data set (its training split) or a .pt file
    choose_bn: bool = False  # no --bn given: path_bn_policy's (recompute on an aligned BatchNorm model)
    align: bool = False
    tokenizer: str | None = None  # text --data: "bytes", or module:callable mapping a text to token ids
    seq_len: int | None = None  # text --data: default the model's maximum positions, at most DEFAULT_SEQ_LEN
    text_field: str = "text"
    allow_nonfinite: bool = False
    progress: bool = False
    curvature: CurvatureRequest | None = None  # --curvature and its options

    def __post_init__(self):
        if self.seq_len is not None and self.seq_len < 2:
            raise LinpathError(f"--seq-len must be at least 2, got {self.seq_len}")


@dataclass
class PathInputs:
    """A path job resolved from PathArgs: the objects evaluate_path() takes, and the names that
    say what they were (setting.json)."""

    model: nn.Module
    start: str
    end: str
    data: object  # an EvalSet, a SourceSplit or a TextBlocks stream
    setting: SweepSetting
    options: PathOptions
    names: dict  # model, data, normalization, bn_data, tokenizer, seq_len
    progress: bool = False


def path_inputs(args: PathArgs, setting: SweepSetting) -> PathInputs:
    """The objects of `linpath path`: the model (named, module:callable, the start's model folder's
    config.json, or the run folder's), the data (a data set's split, a .pt file's tensors, a text
    file's token blocks), the BatchNorm policy and its recompute data (the sweep's recipe), and
    every option of the job."""
    given = args  # states by revision are recorded as given, and resolved to their folders here
    args = dataclasses.replace(args, start=str(located(args.start)), end=str(located(args.end)))
    model_name, data_name, spec = _names(args)
    data, classes = _data(data_name, args, setting)
    model = _model(model_name, args, setting, args.num_classes or classes)
    if _is_text(data_name):
        data = _text_blocks(data_name, args, model)
    if is_streamed(model, args.start, args.end, data, setting):
        _check_streamable(args, setting)
    elif args.choose_bn:
        setting = dataclasses.replace(setting, bn=path_bn_policy(None, model, args.align))
    bn_data, batch, seed, bn_source = _bn_data(args, setting, data_name, spec)
    options = PathOptions(
        device=args.device, batch_size=args.batch_size, key=args.key, output_fn=resolve_output(args.output),
        allow_nonfinite=args.allow_nonfinite, bn_data=bn_data, bn_batch_size=batch, bn_seed=seed,
        align_end=args.align, copy_model=False, curvature=args.curvature,
    )  # fmt: skip
    names = {
        "model": model_name or f"{Path(args.start).name}/config.json",
        "data": str(data_name),
        "normalization": _normalization_text(data_name, data, args.tokenizer),
        "bn_data": bn_source,
        "tokenizer": args.tokenizer if isinstance(data, TextBlocks) else None,
        "seq_len": data.seq_len if isinstance(data, TextBlocks) else None,
    }
    return PathInputs(model, given.start, given.end, data, setting, options, names, args.progress)


def _check_streamable(args: PathArgs, setting: SweepSetting) -> None:
    """What the streamed evaluator does not take, refused before anything is read."""
    if problem := setting.streamed_problem():
        raise LinpathError(problem)
    if args.align or args.bn_data:
        raise LinpathError("--align and --bn-data are not supported with streamed evaluation")


def _is_text(data: str) -> bool:
    return Path(data).suffix in TEXT_SUFFIXES


def _names(args: PathArgs) -> tuple[str | None, str, object]:
    """(model, data, the run folder's spec): a model folder builds its own model; otherwise the
    run folder holding the start state stands in for a missing --model or --data."""
    if args.model is None and is_model_folder(args.start):
        if args.data is None:
            raise LinpathError("--data is needed: a text file (.jsonl, .txt), a .pt file or a data set name")
        return None, args.data, None
    spec = find_run_spec(args.start, needed=args.model is None or args.data is None)
    if args.model is None and spec is None and Path(args.start).is_dir():
        raise LinpathError(f"--model is needed: {folder_refusal(Path(args.start))}")
    for value, flag in ((args.model, "--model"), (args.data, "--data")):
        if value is None and spec is None:
            raise LinpathError(f"{flag} is needed: {args.start} is not inside a linpath run folder")
    return args.model or spec.model.model, args.data or spec.data.dataset, spec


def _data(data_name: str, args: PathArgs, setting: SweepSetting):
    """The data argument, unread for text (tokenized once the model is known)."""
    if _is_text(data_name):
        if not Path(data_name).is_file():
            raise LinpathError(f"--data {data_name}: no such file")
        return None, None
    return resolve_data(data_name, args.data_root, setting.split, setting.task)


def _model(name: str | None, args: PathArgs, setting: SweepSetting, classes: int | None) -> nn.Module:
    """A fresh model for the job to overwrite: --model's, else the start folder's config.json."""
    if name is not None:
        return resolve_model(name, classes)
    return from_folder(args.start, setting.task)


def _text_blocks(data: str, args: PathArgs, model: nn.Module) -> TextBlocks:
    """A text file cut into blocks of tokens for a causal language model (data/stream.py)."""
    if args.tokenizer is None:
        raise LinpathError(
            f"--data {data} is text: give --tokenizer (bytes, or module:callable mapping a text to token ids)"
        )
    tokenize = (
        bytes_tokenizer if args.tokenizer == "bytes" else import_callable(args.tokenizer, "--tokenizer")
    )
    return TextBlocks(data, tokenize, _seq_len(args, model), args.batch_size or 8, args.text_field)


def _seq_len(args: PathArgs, model: nn.Module) -> int:
    if args.seq_len is not None:
        return args.seq_len
    config = getattr(model, "config", None)
    longest = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return min(DEFAULT_SEQ_LEN, int(longest)) if longest else DEFAULT_SEQ_LEN


def _bn_data(args: PathArgs, setting: SweepSetting, data_name: str, spec) -> tuple:
    """(bn_data, batch size, seed, its description) for the recompute policy, as the sweep takes
    it: the first --bn-batches training batches of a named data set (the run's seed and batch size
    when the start state lies in a run folder, else seed 0 and batch 128), or the first batches of
    a .pt file's inputs; (None, 128, 0, None) under the interpolate policy."""
    seed, batch = (spec.train.seed, spec.data.batch_size) if spec else (0, 128)
    if setting.bn != "recompute":
        if args.bn_data is not None:
            raise LinpathError(
                "--bn-data is for --bn recompute (it gives the batches statistics are re-estimated from)"
            )
        return None, batch, seed, None
    name = args.bn_data or (data_name if data_name in datasets.DATASETS else None)
    if name is None:
        raise LinpathError(
            "--bn recompute needs --bn-data (recompute is also --align's default on a model with BatchNorm): "
            "a data set name (its training split is used) or a .pt file of (inputs, targets) to re-estimate "
            "BatchNorm statistics from"
        )
    if name in datasets.DATASETS:
        described = f"{name} training split, {setting.bn_batches} batches of {batch} (seed {seed})"
        return datasets.load(name, args.data_root), batch, seed, described
    data = tensor_file(name, "--bn-data", "cpu")[0]
    count = min(setting.bn_batches, math.ceil(len(data) / batch))
    return data, batch, seed, f"{Path(name).name}, {count} batches of up to {batch}"


def _normalization_text(name: str, data, tokenizer: str | None) -> str:
    """What the job does to the inputs of `name` before the model sees them."""
    if isinstance(data, TextBlocks):
        return f"{Path(name).name}: tokenized by {tokenizer}"
    if name in datasets.DATASETS:
        return f"{name}: {datasets.normalization_text(name)} (as its presets train)"
    return f"{Path(name).name}: none (the file's inputs are used as they are)"


def parse_pair(text: str, kind, what: str) -> tuple:
    """'21' -> (21, 21); '21,15' -> (21, 15); for a plane's --grid (int) and --span (float)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise LinpathError(f"{what} {text!r}: expected one or two comma-separated numbers") from None
    if len(values) == 1 and kind is int:
        values = values * 2
    if len(values) != 2:
        raise LinpathError(f"{what} {text!r}: expected {'one or ' if kind is int else ''}two numbers")
    return tuple(values)


@dataclass(frozen=True)
class PlaneArgs:
    """`linpath plane`'s strings: three state files (origin, a, b), one center (with a seed),
    or one run folder with the replicate and the third state (another replicate, or a step)."""

    states: tuple[str, ...]
    model: str | None = None
    data: str | None = None
    num_classes: int | None = None
    data_root: str | None = None
    out: str | None = None  # default plane-out/, or the run's own plane/<key>/
    replicate: int = 0
    other_replicate: int | None = None
    at: str | None = None


def plane_inputs(args: PlaneArgs, options: PlaneOptions) -> PlaneInputs:
    """The plane job of the command line's strings: a run folder's states (see _run_states), or
    state files of `model` on `data` (both default to the run folder holding the first file)."""
    if len(args.states) == 1 and Path(args.states[0]).is_dir():
        return _run_plane(args, options)
    wanted = 1 if options.seed is not None else 3
    if len(args.states) != wanted:
        what = "one state file (the center)" if wanted == 1 else "three state files (origin, a, b)"
        raise LinpathError(f"give {what} or one run folder, got {len(args.states)} paths")
    spec = find_run_spec(args.states[0]) if args.model is None or args.data is None else None
    if (args.model is None or args.data is None) and spec is None:
        raise LinpathError(
            f"--model and --data are needed: {args.states[0]} is not inside a linpath run folder"
        )
    model, data = args.model or spec.model.model, args.data or spec.data.dataset
    evalset, classes = load_data(data, args.data_root, options.setting.split, resolve_device(options.device))
    net = resolve_model(model, args.num_classes or classes)
    labels = [Path(s).stem for s in args.states]
    title = f"{' / '.join(labels)} ({model}, {evalset.name})"
    return PlaneInputs(net, list(args.states), labels, evalset, Path(args.out or "plane-out"), title)


def _run_plane(args: PlaneArgs, options: PlaneOptions) -> PlaneInputs:
    """A run folder's plane, by default in its own folder <run>/plane/<key>/ (resumed when it
    holds part of this plane). An external run (config/external.py) needs --model and --data."""
    run = RunDir(args.states[0])
    spec = read_spec(run, external_ok=args.model is not None or args.data is not None)
    schedule, evalset, net, model_name = _run_inputs(run, spec, args, options)
    pairs, name = _run_states(schedule, args, options.seed is not None)
    if options.seed is not None:
        name += f"-seed{options.seed}"
    files = _checkpoints(run, pairs)
    labels = [f"r{q} t={t}" for q, t in pairs]
    folder = Path(args.out) if args.out is not None else run.plane_dir(options.key(name))
    kept = {t: run.checkpoint(args.replicate, t) for t in run.saved_steps(args.replicate)}
    title = f"{' / '.join(labels)} ({model_name}, {evalset.name})"
    return PlaneInputs(net, files, labels, evalset, folder, title, kept)


def _run_states(schedule: Schedule, args: PlaneArgs, random: bool):
    """The run's (replicate, step) pairs and the plane's name: for three states, init and final
    of replicate r, then the other replicate's final or r's state at T; for a random plane, the
    center: r's final, or its state at T."""
    r, other, at, final = args.replicate, args.other_replicate, args.at, schedule.total
    if random:
        if other is not None:
            raise LinpathError("--other-replicate does not apply to a random plane (--seed)")
        t = final if at is None else _step_within(at, schedule)
        return [(r, t)], f"r{r}-t{t}-random"
    if (other is None) == (at is None):
        raise LinpathError("give exactly one of --other-replicate and --at for a run folder")
    if other is not None:
        if other == r:
            raise LinpathError(f"--other-replicate {other} is the replicate itself")
        return [(r, 0), (r, final), (other, final)], f"r{r}-r{other}"
    t = _step_within(at, schedule)
    return [(r, 0), (r, final), (r, t)], f"r{r}-at{t}"


def _step_within(at: str, schedule: Schedule) -> int:
    step = Step.parse(at)
    if step.epochs and not schedule.iterations_per_epoch:  # an external run: no epochs known
        raise LinpathError(
            f"--at {at}: an external run counts optimizer steps; write --at in steps, e.g. 1000"
        )
    t = step.to_iterations(schedule.iterations_per_epoch)
    if not 0 < t < schedule.total:
        raise LinpathError(
            f"--at {at} is step {t}; it must lie strictly between 0 and the final {schedule.total}"
        )
    return t


def _checkpoints(run: RunDir, pairs: list[tuple[int, int]]) -> list[Path]:
    for q, t in pairs:
        if not run.checkpoint(q, t).is_file():
            kept = ", ".join(map(str, run.saved_steps(q))) or "none"
            raise LinpathError(
                f"replicate {q} has no checkpoint at t={t} ({run.checkpoint(q, t)}; kept: {kept})"
            )
    return [run.checkpoint(q, t) for q, t in pairs]


def _run_inputs(run: RunDir, spec, args: PlaneArgs, options: PlaneOptions):
    """(schedule, evaluation set, network, model name) of a run: a preset's from its spec, an
    external run's from --model and --data (its schedule: its total steps, no epochs)."""
    dev, split = resolve_device(options.device), options.setting.split
    if not is_external(spec):
        if args.model is not None or args.data is not None:
            raise LinpathError(f"--model and --data are for external runs; {run.root}'s spec builds both")
        source = datasets.load(spec.data.dataset, args.data_root)
        net = resolve_model(spec.model.model, source.num_classes)
        schedule = Schedule.of(spec, source.num_train_examples)
        return schedule, source.eval_set(split, dev), net, spec.model.model
    inputs = external_inputs(args.model, args.data, args.data_root, split)
    schedule = Schedule(0, spec.total_steps, 0.0, (), 1.0, 0)
    return schedule, inputs.source().eval_set(split, dev), inputs.make_model(), args.model


@dataclass(frozen=True)
class GridArgs:
    """`linpath sweep`'s strings for a checkpoint grid's evaluation text."""

    data: str | None
    tokenizer: str | None = None
    seq_len: int | None = None
    text_field: str = "text"
    batch_size: int | None = None
    model: str | None = None  # module:callable, else the revisions' config.json


def grid_data(run_dir, args: GridArgs) -> GridData:
    """A checkpoint grid's data: the text file cut into token blocks (at most the final
    revision's maximum positions, 1,024 by default), and --model where the revisions' own
    config.json should not build the network."""
    if args.data is None or not _is_text(args.data) or not Path(args.data).is_file():
        raise LinpathError(
            "a checkpoint grid is evaluated on a text file: give --data TEXT.jsonl|.txt and --tokenizer"
        )
    if args.tokenizer is None:
        raise LinpathError(f"--data {args.data} is text: give --tokenizer (bytes, or module:callable)")
    tokenize = (
        bytes_tokenizer if args.tokenizer == "bytes" else import_callable(args.tokenizer, "--tokenizer")
    )
    record = GridRecord.read(RunDir(run_dir).grid_record)
    longest = [c.get("max_position_embeddings") or c.get("n_positions") for c in record.configs.values()]
    seq_len = args.seq_len or min([DEFAULT_SEQ_LEN, *[int(n) for n in longest if n]])
    make_model = (lambda: resolve_model(args.model, None)) if args.model else None
    blocks = TextBlocks(args.data, tokenize, seq_len, args.batch_size or 8, args.text_field)
    return GridData(blocks, args.tokenizer, make_model)
