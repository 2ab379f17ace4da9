"""Running a sweep: for each (replicate, t), evaluate the path from the state at t to the final one.

Work items are independent; each finished item is written atomically to its own file under
sweep/<setting>/, so a killed sweep resumes by skipping finished files, and several processes
(or torchrun ranks) can share the work without coordination.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import linpath.data as datasets
from linpath.config.external import is_external
from linpath.config.schedule import Schedule
from linpath.config.spec import build_model, read_spec
from linpath.errors import LinpathError
from linpath.io.checkpoints import match_keys
from linpath.io.rundir import RunDir
from linpath.io.tensors import check_finite, load_state_dict
from linpath.runtime.device import resolve_device
from linpath.runtime.distributed import World
from linpath.runtime.progress import Progress
from linpath.sweep.engine_entry import LineJob, bn_batches, line_job, setting_subset
from linpath.sweep.external import ExternalInputs
from linpath.sweep.grid_sweep import GridData
from linpath.sweep.items import item_problem, result_rows, write_item
from linpath.sweep.paths_tables import rebuild_tables
from linpath.sweep.setting import SweepSetting

MERGE_EVERY_S = 30.0  # how often a single-process sweep refreshes paths.csv from the finished items


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs, besides its setting (which alone decides the numbers): where, which
    items, what it reports and what it lets through. `inputs` are an external run's --model and
    --data (sweep/external.py) or a checkpoint grid's data (sweep/grid_sweep.py); a preset's run
    builds both from its spec."""

    data_root: str | Path | None = None
    device: str = "cpu"
    from_steps: list[int] | None = None  # default: every kept t
    replicates: list[int] | None = None  # default: every finished replicate
    progress: bool = True
    world: World = field(default_factory=World)
    batch_size: int | None = None  # the engine's choice
    compile: bool = False
    allow_nonfinite: bool = False
    allow_duplicates: bool = False
    inputs: ExternalInputs | GridData | None = None  # what the run's spec cannot build
    allow_findings: bool = False  # a checkpoint grid: sweep despite the audit's findings
    fetch_audit: bool = False  # a checkpoint grid: download every revision to audit its tensors too
    hub: dict = field(default_factory=dict)  # a checkpoint grid on the Hub: cache_dir, token

    @property
    def make_model(self) -> Callable | None:
        """An external run's model factory (None: the spec's model)."""
        return getattr(self.inputs, "make_model", None)


def _say(kind: str, message: str) -> None:
    print(f"linpath: {kind}: {message}", file=sys.stderr, flush=True)


def run_grid(spec, num_train_examples: int | None = None) -> tuple[int, list[int]]:
    """(final step, kept steps) of a run's spec: an external run's own (config/external.py); a
    preset's schedule (the paper's grid and --keep-steps) on `num_train_examples` training
    examples, by default the data set's in the registry (no data is read)."""
    if is_external(spec):
        return spec.total_steps, list(spec.kept_steps)
    n = num_train_examples or datasets.info(spec.data.dataset).num_train_examples
    schedule = Schedule.of(spec, n)
    return schedule.total, schedule.kept()


def missing_checkpoints(
    run: RunDir, spec, replicates: list[int] | None = None, num_train_examples: int | None = None
) -> list[tuple[int, int, Path]]:
    """(replicate, t, file) for every kept t of the run's grid (run_grid) up to a finished
    replicate's last step (its DONE mark) that it has no checkpoint for. None in imported runs
    (openlth.json: they keep OpenLTH's steps) and in merged studies (no checkpoints, by design)."""
    if run.is_imported or run.is_merged:
        return []
    _, kept = run_grid(spec, num_train_examples)
    out = []
    for r in run.replicates() if replicates is None else replicates:
        saved, last = set(run.saved_steps(r)), run.done_step(r)
        out.extend(
            (r, t, run.checkpoint(r, t)) for t in kept if t not in saved and (last is None or t <= last)
        )
    return out


def work_items(
    run: RunDir, replicates: list[int], from_steps: list[int] | None, final: int
) -> list[tuple[int, int]]:
    items = []
    for r in replicates:
        saved = run.saved_steps(r)
        if final not in saved:
            raise LinpathError(
                f"replicate {r} has no final checkpoint ({run.checkpoint(r, final)}); train it first"
            )
        wanted = [t for t in saved if t < final] if from_steps is None else from_steps
        if from_steps is not None and final in from_steps:
            _say(
                "note",
                f"--from-steps {final} is the final step of replicate {r}: its path has one point "
                "(the network itself) and is not evaluated",
            )
        for t in wanted:
            if t not in saved:
                raise LinpathError(
                    f"replicate {r} has no checkpoint at t={t} (kept: {', '.join(map(str, saved))})"
                )
            if t < final:
                items.append((r, t))
    return items


def item_check(path: Path, setting: SweepSetting, r: int, t: int) -> str | None:
    """Why the item file of (r, t) under `setting` is not finished (None when it is): missing,
    empty, cut short, a row missing or extra, a non-number, x values that are not the grid's."""
    path = Path(path)
    if RunDir.item_of(path) != (r, t):
        return f"it is not the file of replicate {r}, t={t}"
    if not path.exists():
        return "missing"
    return item_problem(path, setting)


def _unfinished(run: RunDir, setting: SweepSetting, items, announce: bool) -> list[tuple[int, int]]:
    """The items without a valid file; each invalid (not just missing) one is named on stderr."""
    todo = []
    for r, t in items:
        path = run.item_file(setting.key, r, t)
        problem = item_check(path, setting, r, t)
        if problem is None:
            continue
        if problem != "missing" and announce:
            _say("warning", f"recomputing {path}: {problem}")
        todo.append((r, t))
    return todo


def setting_job(spec, setting: SweepSetting, source, dev, make_model=None, **options) -> LineJob:
    """The line job of a run's setting: its (sub)set of the split, its recompute batches (the
    first training batches for the run's seed and batch size), a fresh model of the spec, or of
    `make_model` for an external run (--model); `options` are the engine's (batch_size, compile)."""
    evalset, population = setting_subset(source.eval_set(setting.split, dev), setting)
    batches = None
    if setting.bn == "recompute":
        batches = bn_batches(source, setting.bn_batches, spec.data.batch_size, spec.train.seed, dev)
    model = make_model() if make_model is not None else build_model(spec, source.num_classes, seed=0)
    return line_job(model, evalset, setting, bn_inputs=batches, population=population, **options)


def _item_rows(job: LineJob, setting: SweepSetting, start: dict, final: dict, r: int, t: int) -> list[list]:
    item_xs, results = job.curve(start, final, setting.grid)
    return result_rows(r, t, setting, item_xs, results)


def run_sweep(run: RunDir, setting: SweepSetting, source, options: SweepOptions = SweepOptions()) -> int:
    """Evaluate every unfinished item (this rank's share); returns the number evaluated. An
    external run (config/external.py) needs options.inputs, and a `source` made of --data
    (sweep/external.py).

    Under torchrun rank 0 lists the unfinished items and every rank takes every size-th one
    of that list, so ranks agree on the split even while files appear; items cost the same
    (same grid, same data), so round-robin balances them."""
    spec = read_spec(run, external_ok=options.inputs is not None)
    total, _ = run_grid(spec, source.num_train_examples)
    world = options.world
    replicates = run.replicates() if options.replicates is None else options.replicates
    if not replicates:
        raise LinpathError(f"{run.root} has no finished replicate to sweep; run 'linpath train' first")
    items = work_items(run, replicates, options.from_steps, total)
    if world.is_main:
        _warn_missing(run, spec, source.num_train_examples)
    todo = world.broadcast(_unfinished(run, setting, items, world.is_main))[world.rank :: world.size]
    if not todo:
        return 0
    dev = resolve_device(options.device)
    job = setting_job(
        spec, setting, source, dev, options.make_model, batch_size=options.batch_size, compile=options.compile
    )
    _evaluate_items(run, setting, job, todo, total, options)
    return len(todo)


def _evaluate_items(run: RunDir, setting: SweepSetting, job: LineJob, todo, total: int, options) -> None:
    """Each (r, t) of `todo` evaluated and written as its item file, with progress; paths.csv
    refreshed now and then in a single process (ranks: rank 0 rebuilds it at the end)."""
    world = options.world
    where = f"rank {world.rank} " if world.active else ""
    bar = Progress(f"sweep {where}".strip(), len(todo) * len(setting.grid.xs()), "net", options.progress)
    last_merge = time.monotonic()
    finals: dict[int, dict] = {}
    for done, (r, t) in enumerate(todo, 1):
        if r not in finals:
            finals = {r: _load(run, r, total, options.allow_nonfinite, job)}
        try:
            start = _load(run, r, t, options.allow_nonfinite, job)
            rows = _item_rows(job, setting, start, finals[r], r, t)
        except LinpathError as e:
            raise LinpathError(f"{run.checkpoint(r, t)} and {run.checkpoint(r, total)}: {e}") from None
        write_item(run, setting.key, r, t, rows)
        bar.update(len(setting.grid.xs()), f"sweep {where}{done}/{len(todo)}: replicate {r} t={t} done")
        if not world.active and time.monotonic() - last_merge > MERGE_EVERY_S:
            rebuild_tables(run)
            last_merge = time.monotonic()
    bar.close()


def _load(run: RunDir, r: int, t: int, allow_nonfinite: bool, job: LineJob) -> dict:
    """A kept state, its keys fitted to the model's (a "model."/"module." prefix of a state kept
    from a Lightning module or a DDP wrapper stripped), refused when not finite."""
    path = run.checkpoint(r, t)
    state = match_keys(load_state_dict(path), job.engine.targets)
    return state if allow_nonfinite else check_finite(state, path)


def _warn_missing(run: RunDir, spec, num_train_examples: int | None) -> None:
    """One warning naming the kept checkpoints whose paths the sweep cannot evaluate."""
    missing = missing_checkpoints(run, spec, num_train_examples=num_train_examples)
    if missing:
        shown = ", ".join(f"replicate {r} t={t}" for r, t, _ in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        _say(
            "warning",
            f"{len(missing)} kept checkpoint(s) missing, their paths are skipped: {shown}{more} "
            f"(first: {missing[0][2]})",
        )
