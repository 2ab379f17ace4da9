"""`linpath path` on the streamed evaluator: language models, model folders, a stopping rule.

    linpath path step-1000/ step-2000/ --task causal-lm --data valid.jsonl --tokenizer bytes --seq-len 512

Taken when the task is causal-lm, a state is a model folder (config.json + *.safetensors
shards), --se-target is given, or --data is a text file (.jsonl, .txt). The states stay on disk
(read a tensor at a time) and the data is read a batch at a time at every point (see
engine/streamed.py); the model is built from the start folder's config.json unless --model
names one. Under torchrun the ranks share every point's batches and rank 0 writes the files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from linpath import data as datasets
from linpath.api import PathCurve, evaluate_streamed
from linpath.api.resolve import (
    PathOptions,
    describe_file,
    import_callable,
    points_progress,
    resolve_model,
    resolve_output,
    tensor_file,
    write_outputs,
)
from linpath.data.imagenet import ImageFolderSource
from linpath.data.stream import ImageFolderStream, TensorStream, TextBlocks, bytes_tokenizer
from linpath.engine.streamed import MIN_EXAMPLES
from linpath.engine.tasks import TASKS
from linpath.errors import LinpathError
from linpath.io.hf_folder import is_model_folder
from linpath.io.tensors import folder_refusal
from linpath.models.hf import from_folder
from linpath.runtime import distributed
from linpath.runtime.device import resolve_device
from linpath.sweep.setting import SweepSetting

TEXT_SUFFIXES = (".jsonl", ".txt")
DEFAULT_SEQ_LEN = 1024  # tokens per block when the model's config names no maximum


@dataclass(frozen=True)
class StreamOptions:
    """`linpath path`'s options for the streamed evaluator (see the module's docstring)."""

    task: str = "classification"
    se_target: float | None = None
    min_examples: int = MIN_EXAMPLES
    tokenizer: str | None = None  # "bytes", or module:callable / file.py:callable: text -> token ids
    seq_len: int | None = None  # default: the model's maximum positions, at most DEFAULT_SEQ_LEN
    text_field: str = "text"

    def __post_init__(self):
        if self.task not in TASKS:
            raise LinpathError(f"--task {self.task!r}: known tasks are {', '.join(TASKS)}")
        if self.se_target is not None and not self.se_target > 0:
            raise LinpathError(f"--se-target must be positive, got {self.se_target}")
        if self.seq_len is not None and self.seq_len < 2:
            raise LinpathError(f"--seq-len must be at least 2, got {self.seq_len}")

    def wanted(self, start, end, data: str | None) -> bool:
        """Whether this job is the streamed evaluator's (see the module's docstring)."""
        text = data is not None and Path(data).suffix in TEXT_SUFFIXES
        folders = is_model_folder(start) or is_model_folder(end)
        return self.task != "classification" or self.se_target is not None or folders or text


def _check_setting(setting: SweepSetting) -> None:
    """The sweep-setting options streamed evaluation does not take."""
    if setting.bn != "interpolate":
        raise LinpathError("--bn recompute is not supported with streamed evaluation")
    if setting.eval_examples:
        raise LinpathError("--eval-examples is not supported with streamed evaluation (see --se-target)")
    if setting.params:
        raise LinpathError("--params is not supported with streamed evaluation")


def _model(start, model: str | None, task: str, num_classes: int | None):
    """--model, else the network of the start folder's config.json."""
    if model is not None:
        return resolve_model(model, num_classes)
    if not is_model_folder(start):
        what = (
            folder_refusal(Path(start))
            if Path(start).is_dir()
            else f"{start} is not a model folder with a config.json"
        )
        raise LinpathError(f"--model is needed: {what}")
    return from_folder(start, task)


def _tokenizer(text: str | None, data: str):
    if text is None:
        raise LinpathError(
            f"--data {data} is text: give --tokenizer (bytes, or module:callable mapping a text to token ids)"
        )
    return bytes_tokenizer if text == "bytes" else import_callable(text, "--tokenizer")


def _seq_len(stream: StreamOptions, work) -> int:
    if stream.seq_len is not None:
        return stream.seq_len
    config = getattr(work, "config", None)
    longest = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return min(DEFAULT_SEQ_LEN, int(longest)) if longest else DEFAULT_SEQ_LEN


def _stream(data: str, stream: StreamOptions, work, setting: SweepSetting, opts: PathOptions, dev):
    """--data as a Stream: a text file tokenized in blocks, a .pt file of tensors, or a data set
    (an image-folder one decoded batch by batch, the others preloaded)."""
    if Path(data).suffix in TEXT_SUFFIXES:
        tokenize = _tokenizer(stream.tokenizer, data)
        return TextBlocks(data, tokenize, _seq_len(stream, work), opts.batch_size or 8, stream.text_field)
    size = opts.batch_size or (8 if stream.task == "causal-lm" else 256)
    if data in datasets.DATASETS:
        source = datasets.load(data, opts.data_root)
        if isinstance(source, ImageFolderSource):
            return ImageFolderStream(source, setting.split, size, dev)
        evalset = source.eval_set(setting.split, dev)
    else:
        evalset = tensor_file(data, "--data", dev)[0]
    return TensorStream(evalset.inputs, evalset.labels, size, evalset.name)


def _record(start, end, model, data, setting, stream: StreamOptions, curve: PathCurve, source) -> dict:
    """setting.json: what decided the numbers, and how much was read."""
    seq = f"-seq{source.seq_len}" if isinstance(source, TextBlocks) else ""
    stop = f"-se{stream.se_target:g}" if stream.se_target is not None else ""
    unit = {"causal-lm": "sequence", "classification": "example"}.get(curve.task, "batch")
    return {
        "setting": f"{source.name}-{stream.task}{seq}-{setting.grid.key}-{setting.precision}{stop}",
        "start": str(start),
        "end": str(end),
        "model": model or f"{Path(start).name}/config.json",
        "data": str(data),
        "split": curve.split,
        "normalization": f"{Path(data).name}: tokenized by {stream.tokenizer}"
        if isinstance(source, TextBlocks)
        else f"{data}: as 'linpath path' reads it",
        "task": curve.task,
        "grid": setting.grid.key,
        "points": len(curve.x),
        "precision": setting.precision,
        "seq_len": getattr(source, "seq_len", None),
        "tokenizer": stream.tokenizer if isinstance(source, TextBlocks) else None,
        "se_target": stream.se_target,
        "min_examples": stream.min_examples if stream.se_target is not None else None,
        "se_unit": unit,
        "examples_min": int(curve.point_examples.min()),
        "examples_max": int(curve.point_examples.max()),
        # None: the stream's size is unknown (a text file stopped early by --se-target)
        "population": source.length
        or (int(curve.point_examples.max()) if stream.se_target is None else None),
        "tokens": int(curve.quantities["tokens"].sum()) if curve.quantities else None,
    }


def summary_lines(curve: PathCurve, record: dict) -> list[str]:
    """What `linpath path` prints for a streamed job: the setting, what was read, the metrics."""
    of = f" of {record['population']}" if record["population"] is not None else ""
    lo, hi = record["examples_min"], record["examples_max"]
    read = f"{lo}" if lo == hi else f"{lo} to {hi}"
    lines = [
        f"setting: {record['setting']} ({record['points']} points on {read}{of} {record['se_unit']}s)",
        f"data: {record['normalization']}",
    ]
    lines += curve.summary_lines()
    for quantity, values in (curve.quantities or {}).items():
        if quantity != "tokens":
            lines.append(f"{quantity}: start {values[0]:.4f}, end {values[-1]:.4f}, max {values.max():.4f}")
    return lines


def streamed_path_between_files(
    start: str | os.PathLike,
    end: str | os.PathLike,
    model: str | None,
    data: str | None,
    out: Path,
    setting: SweepSetting,
    stream: StreamOptions,
    opts: PathOptions,
) -> tuple[PathCurve, list[Path]]:
    """`linpath path` for a streamed job: writes paths.csv (with perplexity, bits_per_byte and
    tokens columns for causal-lm), setting.json, metrics.json and path.png/.pdf to `out`."""
    _check_setting(setting)
    if data is None:
        raise LinpathError("--data is needed: a text file (.jsonl, .txt), a .pt file or a data set name")
    world = distributed.init(opts.device)
    dev = resolve_device(world.device(opts.device))
    classes = opts.num_classes or (datasets.info(data).num_classes if data in datasets.DATASETS else None)
    work = _model(start, model, stream.task, classes)
    source = _stream(data, stream, work, setting, opts, dev)
    total = None if setting.grid.kind == "adaptive" else len(setting.grid.xs())
    report, close = points_progress(opts.progress and world.is_main, total)
    try:
        curve = evaluate_streamed(
            work.to(dev),
            start,
            end,
            source,
            setting.grid,
            dev,
            task=stream.task,
            output_fn=resolve_output(opts.output),
            precision=setting.precision,
            se_target=stream.se_target,
            min_examples=stream.min_examples,
            key=opts.key,
            allow_nonfinite=opts.allow_nonfinite,
            on_points=report,
        )
    finally:
        close()
    record = _record(start, end, model, data, setting, stream, curve, source)
    title = f"start: {describe_file(start, end)}\nend: {describe_file(end, start)}\n{record['setting']}"
    if not world.is_main:
        return curve, []
    return curve, write_outputs(out, curve, record, title)
