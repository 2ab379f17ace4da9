"""Running a sweep: for each (replicate, t), evaluate the path from the state at t to the final one.

Work items are independent; each finished item is written atomically to its own file under
sweep/<setting>/, so a killed sweep resumes by skipping finished files, and several processes
(or torchrun ranks) can share the work without coordination.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from tqdm import tqdm

from linpath.config.spec import build_model, read_spec
from linpath.engine.evaluator import PathEvaluator
from linpath.engine.params import restrict, select
from linpath.errors import LinpathError
from linpath.io.checkpoints import fit_keys
from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tensors import check_finite, load_state_dict
from linpath.runtime import progress as plain_progress
from linpath.runtime.device import resolve_device
from linpath.runtime.distributed import World
from linpath.sweep.external import run_grid
from linpath.sweep.inputs import bn_training_batches, evaluation_subset
from linpath.sweep.items import item_problem
from linpath.sweep.merge import format_rows, merge_paths
from linpath.sweep.setting import SweepSetting

MERGE_EVERY_S = 30.0  # how often a single-process sweep refreshes paths.csv from the finished items


def _say(kind: str, message: str) -> None:
    print(f"linpath: {kind}: {message}", file=sys.stderr, flush=True)


def missing_checkpoints(run: RunDir, spec, source) -> list[tuple[int, int, Path]]:
    """(replicate, t, file) for every kept t of the schedule that a finished replicate has no
    checkpoint for. Imported runs (openlth.json) keep OpenLTH's steps, not the schedule's: none."""
    if (run.root / "openlth.json").exists():
        return []
    kept = run_grid(spec, source)[1]
    out = []
    for r in run.replicates():
        saved = set(run.saved_steps(r))
        out.extend((r, t, run.checkpoint(r, t)) for t in kept if t not in saved)
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


def item_path(run: RunDir, setting: SweepSetting, r: int, t: int):
    return run.sweep_dir / setting.key / f"r{r}-t{t:07d}.csv"


def item_check(path: Path, setting: SweepSetting, r: int, t: int) -> str | None:
    """Why the item file of (r, t) under `setting` is not finished (None when it is): missing,
    empty, cut short, a row missing or extra, a non-number, x values that are not the grid's."""
    path = Path(path)
    if path.name != f"r{r}-t{t:07d}.csv":
        return f"it is not the file of replicate {r}, t={t}"
    if not path.exists():
        return "missing"
    return item_problem(path, setting.grid, True, setting.split, setting.bn, setting.precision)


def item_is_valid(path: Path, setting: SweepSetting, r: int, t: int) -> bool:
    return item_check(path, setting, r, t) is None


def _unfinished(run: RunDir, setting: SweepSetting, items, announce: bool) -> list[tuple[int, int]]:
    """The items without a valid file; each invalid (not just missing) one is named on stderr."""
    todo = []
    for r, t in items:
        path = item_path(run, setting, r, t)
        problem = item_check(path, setting, r, t)
        if problem is None:
            continue
        if problem != "missing" and announce:
            _say("warning", f"recomputing {path}: {problem}")
        todo.append((r, t))
    return todo


def _engine(spec, setting: SweepSetting, source, dev, batch_size, compile: bool, make_model=None):
    """The evaluator for this setting, with its (sub)set of the split, its BN batches and the
    state-dict keys its parameter subset moves (None: all). `make_model` builds the model of an
    external run (--model), whose spec cannot."""
    evalset, population = evaluation_subset(source.eval_set(setting.split, dev), setting.eval_examples)
    bn_batches = None
    if setting.bn == "recompute":
        bn_batches = bn_training_batches(
            source, setting.bn_batches, spec.train.seed, spec.data.batch_size, dev
        )
    model = make_model() if make_model is not None else build_model(spec, source.num_classes, seed=0)
    selected = select(setting.params, model) if setting.params else None
    engine = PathEvaluator(
        model,
        evalset,
        batch_size=batch_size,
        precision=setting.precision,
        population=population,
        compile=compile,
    )
    return engine, bn_batches, selected


def _item_rows(
    engine, setting: SweepSetting, start: dict, final: dict, bn_batches, r: int, t: int
) -> list[list]:
    path = engine.path(start, final, bn=setting.bn, bn_batches=bn_batches)
    item_xs, results = setting.grid.run(path.evaluate)
    return [
        [
            r,
            t,
            repr(x),
            setting.split,
            setting.bn,
            res.examples,
            setting.precision,
            repr(res.loss),
            repr(res.error),
            repr(res.loss_se),
            repr(res.error_se),
        ]
        for x, res in zip(item_xs, results)
    ]


def run_sweep(
    run: RunDir,
    setting: SweepSetting,
    source,
    device: str = "cpu",
    from_steps: list[int] | None = None,
    replicates: list[int] | None = None,
    progress: bool = True,
    world: World = World(),
    batch_size: int | None = None,
    compile: bool = False,
    allow_nonfinite: bool = False,
    make_model=None,
) -> int:
    """Evaluate every unfinished item (this rank's share); returns the number evaluated.
    An external run (config/external.py) needs `make_model` and a `source` made of --data
    (sweep/external.py).

    Under torchrun rank 0 lists the unfinished items and every rank takes every size-th one
    of that list, so ranks agree on the split even while files appear; items cost the same
    (same grid, same data), so round-robin balances them."""
    spec = read_spec(run, external_ok=make_model is not None)
    final_step, _ = run_grid(spec, source)
    replicates = run.replicates() if replicates is None else replicates
    if not replicates:
        raise LinpathError(f"{run.root} has no finished replicate to sweep; run 'linpath train' first")
    items = work_items(run, replicates, from_steps, final_step)
    if world.is_main:
        missing = missing_checkpoints(run, spec, source)
        if missing:
            shown = ", ".join(f"replicate {r} t={t}" for r, t, _ in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            _say(
                "warning",
                f"{len(missing)} kept checkpoint(s) missing, their paths are skipped: {shown}{more} "
                f"(first: {missing[0][2]})",
            )
    todo = world.broadcast(_unfinished(run, setting, items, world.is_main))[world.rank :: world.size]
    if not todo:
        return 0
    engine, bn_batches, selected = _engine(
        spec, setting, source, resolve_device(device), batch_size, compile, make_model
    )
    last_merge = time.monotonic()
    plain = progress and plain_progress.plain()
    bar = tqdm(
        total=len(todo) * len(setting.grid.xs()),
        desc=f"sweep (rank {world.rank})" if world.active else "sweep",
        unit="net",
        disable=not progress or plain,
        dynamic_ncols=True,
    )
    started = time.monotonic()

    def load(t: int) -> dict:
        path = run.checkpoint(r, t)
        state = fit_keys(load_state_dict(path), engine.targets)  # a "model."/"module." prefix stripped
        return state if allow_nonfinite else check_finite(state, path)

    finals: dict[int, dict] = {}
    for done, (r, t) in enumerate(todo, 1):
        if r not in finals:
            finals = {r: load(final_step)}
        start, final = load(t), finals[r]
        if selected is not None:
            start, final = restrict(start, final, selected, setting.hold)
        try:
            rows = _item_rows(engine, setting, start, final, bn_batches, r, t)
        except LinpathError as e:
            raise LinpathError(f"{run.checkpoint(r, t)} and {run.checkpoint(r, final_step)}: {e}") from None
        atomic_write_text(item_path(run, setting, r, t), format_rows(rows))
        bar.update(len(setting.grid.xs()))
        if plain:
            where = f"rank {world.rank} " if world.active else ""
            plain_progress.line(
                f"sweep {where}{done}/{len(todo)}: replicate {r} t={t} done "
                f"({math.ceil(time.monotonic() - started)} s)"
            )
        if not world.active and time.monotonic() - last_merge > MERGE_EVERY_S:
            merge_paths(run)  # keep paths.csv current during long sweeps (ranks: rank 0 merges at the end)
            last_merge = time.monotonic()
    bar.close()
    return len(todo)
