"""Sweeping a checkpoint grid (a run imported by runs/import_grid.py) on the streamed evaluator.

Each item (replicate r, step t) is the path from the revision at t to replicate r's final
revision, evaluated as `linpath path` evaluates two model folders (engine/streamed.py): one
resident model, built from the final revision's config.json (or `make_model`), θ(x) written
into it tensor by tensor from the two memory-mapped folders (engine/lazy_states.py), the text
streamed through at every point, with the standard-error stopping rule where se_target is
given. So the memory is the model, its activations, and one tensor of each endpoint, however
large the grid. Under torchrun every rank evaluates every item, each reading its share of each
point's batches (the sums added over ranks); rank 0 writes the item files.

An item file is the sweep's (sweep/items.py) with the language model's columns after it
(perplexity, bits_per_byte, tokens); it is written atomically, so a killed sweep resumes with
the items it had not finished. Every folder is checked against the hashes grid.json recorded
before it is read (io/grid_record.state_folder). What the data is (the text file's sha256,
tokenizer, sequence length, task, stopping rule) is not part of the setting's key, so it is
recorded in sweep/<key>/data.json and a later sweep of that key on other data is refused.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from linpath.engine.lazy_states import StateMix, check_finite_states
from linpath.engine.streamed import StreamedEvaluator, StreamResult
from linpath.engine.tasks import make_task
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.grid_record import GridRecord, state_folder
from linpath.io.hf_folder import ModelFolder
from linpath.io.hub import file_sha256
from linpath.io.rundir import RunDir
from linpath.models.hf import from_folder
from linpath.runtime.device import resolve_device
from linpath.runtime.progress import Progress
from linpath.sweep.items import LM_PATH_COLUMNS, format_rows, item_problem, result_rows
from linpath.sweep.setting import SweepSetting


@dataclass(frozen=True)
class GridData:
    """What the grid is evaluated on, beside the setting (task and stopping rule are its fields):
    a data.stream Stream (TextBlocks for text), how it was made (`tokenizer`: 'bytes' or
    module:callable, as given), and the model to build where the revisions' config.json should
    not (`make_model`, --model)."""

    stream: object
    tokenizer: str | None = None
    make_model: Callable[[], nn.Module] | None = None
    extra: dict = field(default_factory=dict)  # anything else that decides the numbers

    def record(self) -> dict:
        """data.json: every field that decides the numbers (the file by its sha256)."""
        path = getattr(self.stream, "path", None)
        return {
            "data": str(path) if path is not None else getattr(self.stream, "name", "data"),
            "sha256": file_sha256(Path(path)) if path is not None else None,
            "seq_len": getattr(self.stream, "seq_len", None),
            "batch_size": getattr(self.stream, "batch_size", None),
            "text_field": getattr(self.stream, "text_field", None),
            "tokenizer": self.tokenizer,
            **self.extra,
        }


def check_same_data(run: RunDir, key: str, data: GridData) -> None:
    """Record the data of setting `key`, or refuse data other than recorded (the path aside)."""
    path, now = run.setting_data(key), data.record()
    if path.is_file():
        try:
            was = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise LinpathError(f"cannot read {path}: {e}") from None
        differ = [k for k in sorted(set(was) | set(now)) if k != "data" and was.get(k) != now.get(k)]
        if differ:
            shown = ", ".join(f"{k} {was.get(k)!r} then, {now.get(k)!r} now" for k in differ[:3])
            raise LinpathError(
                f"sweep/{key} of {run.root} was evaluated on other data ({shown}): move sweep/{key} away "
                "to sweep these, or sweep another setting (--grid, --eval-precision)"
            )
        return
    atomic_write_text(path, json.dumps(now, indent=2, sort_keys=True) + "\n")


def check_setting(setting: SweepSetting) -> None:
    """The setting fields a streamed evaluation does not take (as `linpath path`'s)."""
    if problem := setting.streamed_problem():
        raise LinpathError(f"{problem} (a checkpoint grid is evaluated streamed)")


def grid_items(
    record: GridRecord, replicates: list[int] | None, from_steps: list[int] | None
) -> list[tuple[int, int]]:
    """(replicate, t) of every path: each recorded step before the replicate's final one."""
    chosen = sorted(record.replicates) if replicates is None else replicates
    for r in chosen:
        if r not in record.replicates:
            raise LinpathError(
                f"the grid has no replicate {r} (it has {', '.join(map(str, record.replicates))})"
            )
    items = []
    for r in chosen:
        steps, final = record.steps(r), record.final_step(r)
        wanted = steps if from_steps is None else [t for t in from_steps if t in steps]
        items += [(r, t) for t in wanted if t < final]
    return items


def unfinished(run: RunDir, setting: SweepSetting, items: list[tuple[int, int]], announce: bool) -> list:
    """The items without a valid item file; an invalid (not missing) one is named on stderr."""
    todo = []
    for r, t in items:
        path = run.item_file(setting.key, r, t)
        if path.exists() and (problem := item_problem(path, setting)) is None:
            continue
        if path.exists() and announce:
            print(f"linpath: warning: recomputing {path}: {problem}", file=sys.stderr, flush=True)
        todo.append((r, t))
    return todo


def item_rows(r: int, t: int, setting: SweepSetting, xs, results: list[StreamResult]) -> list[list]:
    """An item file's rows: the sweep's columns, then perplexity, bits per byte and tokens."""
    return result_rows(r, t, setting, xs, results, ("perplexity", "bits_per_byte", "targets"))


@dataclass
class GridJob:
    """One sweep's resident parts: the run, its record, the evaluator and its model."""

    run: RunDir
    record: GridRecord
    setting: SweepSetting
    evaluator: StreamedEvaluator
    allow_nonfinite: bool = False
    hub: dict = field(default_factory=dict)  # cache_dir, token

    def folder(self, r: int, t: int) -> ModelFolder:
        """Replicate r's revision at t, checked against grid.json, read lazily (a StateMix reads
        it under the model's names: engine.lazy_states.under_model_names)."""
        return ModelFolder(state_folder(self.run, self.record, r, t, True, **self.hub))

    def rows(self, r: int, t: int, final: ModelFolder) -> list[list]:
        """Evaluate one item: the path from the revision at t to the final one."""
        start = self.folder(r, t)
        names = [
            f"replicate {r}'s {self.record.replicates[r].revisions[k].name}"
            for k in (t, self.record.final_step(r))
        ]
        if not self.allow_nonfinite:
            check_finite_states([start], names[:1])
        mix = StateMix(self.evaluator.model, [start, final], names)
        xs, results = self.setting.grid.run(lambda chunk: self.evaluator.evaluate_path(mix, chunk))
        return item_rows(r, t, self.setting, xs, results)


def open_job(run: RunDir, setting: SweepSetting, data: GridData, options) -> GridJob:
    """The model (built from replicate 0's final config.json unless data.make_model), on the
    device, and the evaluator of `data` under the setting, sharded over the ranks."""
    record = GridRecord.read(run.grid_record)
    hub, world = dict(options.hub), options.world
    if data.make_model is not None:
        model = data.make_model()
    else:
        first = min(record.replicates)
        folder = state_folder(run, record, first, record.final_step(first), True, **hub)
        model = from_folder(folder, setting.task)
    evaluator = StreamedEvaluator(
        model, data.stream, make_task(setting.task), resolve_device(options.device), setting.precision, None,
        setting.se_target, setting.min_examples, shard=(world.rank, world.size),
    )  # fmt: skip
    return GridJob(run, record, setting, evaluator, options.allow_nonfinite, hub)


def sweep_grid(run_dir, setting: SweepSetting, data: GridData, options) -> int:
    """Evaluate every unfinished item of a grid run (see the module's docstring) under
    SweepOptions (sweep/run.py: device, from_steps, replicates, progress, world,
    allow_nonfinite, the Hub's cache_dir and token); returns the number evaluated. The caller
    holds the run's lock and checks the data (check_same_data) and the audit first
    (runs/stages.py)."""
    run, world = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir), options.world
    check_setting(setting)
    record = GridRecord.read(run.grid_record)
    items = grid_items(record, options.replicates, options.from_steps)
    todo = world.broadcast(unfinished(run, setting, items, world.is_main))
    if not todo:
        return 0
    job = open_job(run, setting, data, options)
    points = len(setting.grid.xs())
    bar = Progress("sweep grid", len(todo) * points, "net", options.progress and world.is_main)
    finals: dict[int, ModelFolder] = {}
    for done, (r, t) in enumerate(todo, 1):
        if r not in finals:
            finals = {r: job.folder(r, record.final_step(r))}
            if not job.allow_nonfinite:
                check_finite_states([finals[r]], [f"replicate {r}'s final revision"])
        rows = job.rows(r, t, finals[r])
        if world.is_main:
            atomic_write_text(run.item_file(setting.key, r, t), format_rows(rows, LM_PATH_COLUMNS))
        bar.update(points, f"sweep grid {done}/{len(todo)}: replicate {r} t={t} done")
    bar.close()
    return len(todo)
