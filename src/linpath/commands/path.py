"""`linpath path`: the path between two saved states of any model, from files on disk."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from pathlib import Path

import torch
from torch import nn

from linpath import data as datasets
from linpath import models
from linpath.api import PathCurve, align, as_evalset, is_classification, path
from linpath.config.presets import PRESETS
from linpath.config.spec import read_spec
from linpath.data.source import EvalSet
from linpath.engine.bn_stats import path_bn_policy
from linpath.engine.outputs import OutputFn
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tensors import load_tensors
from linpath.runtime.device import resolve_device


def find_run_spec(checkpoint: str | os.PathLike):
    """The spec of the linpath run folder holding `checkpoint`, or None when it is elsewhere."""
    for folder in list(Path(checkpoint).resolve().parents)[:4]:
        if (folder / "spec.json").is_file():
            return read_spec(RunDir(folder))
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
    if not Path(text).is_file():
        raise LinpathError(
            f"--data {text!r} is neither a data set ({', '.join(sorted(datasets.DATASETS))}) nor a file"
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


def path_between_files(
    start: str | os.PathLike,
    end: str | os.PathLike,
    model: str | None = None,
    data: str | None = None,
    out: str | os.PathLike = "path-out",
    data_root=None,
    split: str = "test",
    points: int = 100,
    bn: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = 1000,
    num_classes: int | None = None,
    allow_nonfinite: bool = False,
    align_end: bool = False,
    key: str | None = None,
    output: str | None = None,
) -> tuple[PathCurve, list[Path]]:
    """`linpath path`: the path between two saved states, written to `out` as paths.csv (the
    sweep's columns), metrics.json and path.png/.pdf. Without `model`/`data`, both come from the
    linpath run folder holding `start` (if it lies in one). `align_end` permutes the end's units
    to match the start's first (weight matching, see engine/align.py); `bn` None is
    engine.bn_stats.path_bn_policy's default (recompute on an aligned BatchNorm model); `key` and
    `output` are path()'s key and output_fn (the latter as module:callable)."""
    spec = find_run_spec(start) if model is None or data is None else None
    if model is None:
        if spec is None:
            raise LinpathError(f"--model is needed: {start} is not inside a linpath run folder")
        model = spec.model.model
    if data is None:
        if spec is None:
            raise LinpathError(f"--data is needed: {start} is not inside a linpath run folder")
        data = spec.data.dataset
    dev = resolve_device(device)
    evalset, classes = load_data(data, data_root, split, dev)
    net = resolve_model(model, num_classes or classes)
    bn = path_bn_policy(bn, net, align_end)
    output_fn = resolve_output(output)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LinpathError(f"--out {out} is a file, not a folder")
    curve = path(
        net,
        start,
        align(start, end, net, key=key) if align_end else end,
        evalset,
        grid=points,
        bn=bn,
        device=dev,
        batch_size=batch_size,
        precision=precision,
        allow_nonfinite=allow_nonfinite,
        key=key,
        output_fn=output_fn,
    )
    files = [curve.to_csv(out / "paths.csv")]
    atomic_write_text(
        out / "metrics.json",
        json.dumps(
            {
                "start": str(start),
                "end": str(end),
                "model": model,
                "data": data,
                "split": evalset.name,
                "bn": bn,
                "aligned": align_end,
                "examples": curve.examples,
                **curve.metrics(),
            },
            indent=2,
        )
        + "\n",
    )
    files.append(out / "metrics.json")
    title = f"{Path(start).name} → {Path(end).name} ({model}, {evalset.name}, BN {bn})"
    fig = curve.plot(title=title)
    for ext in ("png", "pdf"):
        fig.savefig(out / f"path.{ext}", dpi=150, bbox_inches="tight")
        files.append(out / f"path.{ext}")
    return curve, files
