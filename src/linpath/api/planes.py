"""The plane API: loss and error on a plane of states, through three (Goodfellow et al. 2015)
or around one along random filter-normalized directions (Li et al. 2018); each β row kept in a
file so that an interrupted plane resumes, and shared among processes (torchrun ranks)."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from linpath.analysis.plane import PlaneRows, Surface
from linpath.analysis.trajectory import PLANE_TRAJECTORY_COLUMNS, plane_coordinates
from linpath.api.inputs import (
    BatchFn,
    DataLike,
    as_evalset,
    checked_inputs,
    default_device,
    is_classification,
    make_score,
)
from linpath.api.states import StateLike, model_states
from linpath.engine.plane import Plane, plane_fingerprint, random_directions, through_three
from linpath.errors import LinpathError
from linpath.io.rundir import OutDir
from linpath.io.tables import write_csv
from linpath.io.tensors import load_state_dict
from linpath.runtime import distributed
from linpath.runtime.device import check_precision, resolve_device
from linpath.runtime.progress import Progress
from linpath.runtime.threads import using
from linpath.sweep.engine_entry import open_engine
from linpath.sweep.setting import SweepSetting

MAX_PLANE_SIDE = 1001  # points per side of a plane's grid (a million evaluations at most)


def _plane_axes(grid, span) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, betas) from grid = n or (n_alpha, n_beta) and span = (lo, hi) for both axes or
    ((lo_alpha, hi_alpha), (lo_beta, hi_beta))."""
    counts = (grid, grid) if isinstance(grid, int) and not isinstance(grid, bool) else tuple(grid)
    spans = (span, span) if len(span) == 2 and not isinstance(span[0], (tuple, list)) else tuple(span)
    if len(counts) != 2 or len(spans) != 2:
        raise LinpathError(f"grid must be n or (n_alpha, n_beta) and span (lo, hi); got {grid!r}, {span!r}")
    axes = []
    for n, (lo, hi) in zip(counts, spans):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PLANE_SIDE:
            raise LinpathError(
                f"each side of the plane's grid must be 1 to {MAX_PLANE_SIDE} points, got {n!r}"
            )
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise LinpathError(f"span must be finite with lo < hi, got ({lo}, {hi})")
        axes.append(np.linspace(lo, hi, n))
    return axes[0], axes[1]


def _evaluate_plane(work, origin, d_a, d_b, data, grid, span, options) -> tuple:
    """The plane's (alphas, betas, loss, error or None, evalset) on `work` (overwritten), with
    api options (loss_fn, device, ...); evaluated a β row at a time, each kept in
    options["rows_file"] when given, so that an interrupted plane resumes there and processes
    given options["shard"] share the rows (see _plane_rows)."""
    alphas, betas = _plane_axes(grid, span)
    shard = _check_shard(options["shard"], options["rows_file"])
    dev = default_device(work) if options["device"] is None else resolve_device(str(options["device"]))
    check_precision(options["precision"])
    evalset = checked_inputs(work, as_evalset(data, dev, options["batch_size"] or 1000), dev)
    classification = is_classification(evalset.labels)
    score = make_score(options["loss_fn"], options["error_fn"], classification)
    engine = open_engine(work, evalset, options["precision"], batch_size=options["batch_size"], score=score)
    plane = Plane(engine, origin, d_a, d_b)
    store = None
    if options["rows_file"] is not None:
        fingerprint = plane_fingerprint(plane.origin, plane.d_a, plane.d_b, evalset.inputs, evalset.labels)
        store = PlaneRows(options["rows_file"], alphas, betas, fingerprint + options["precision"])
    loss, error = _plane_rows(plane, alphas, betas, store, shard, options["progress"])
    has_error = options["error_fn"] is not None or classification
    return alphas, betas, loss, error if has_error else None, evalset


def _check_shard(shard, rows_file) -> tuple[int, int]:
    """shard = (rank, ranks) checked; processes sharing a plane meet only in its row files, so
    more than one rank needs a rows_file."""
    try:
        rank, ranks = shard
    except (TypeError, ValueError):
        rank = ranks = None
    integers = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (rank, ranks))
    if not integers or not 0 <= rank < ranks:
        raise LinpathError(f"shard must be (rank, ranks) with 0 <= rank < ranks, got {shard!r}")
    if ranks > 1 and rows_file is None:
        raise LinpathError(
            f"shard={shard!r} needs a rows_file: processes share a plane through its row files"
        )
    return rank, ranks


def _my_rows(unfinished: list[int], shard: tuple[int, int]) -> list[int]:
    """This process's share of the unfinished rows. Under a process group (torchrun) every
    size-th of rank 0's list, so that a resumed plane's remaining rows are spread evenly and
    the ranks agree even while row files appear; separate processes without one take the rows
    i with i % ranks == rank, a split fixed by the grid whatever each has read."""
    rank, ranks = shard
    if ranks == 1:
        return unfinished
    if distributed.is_initialized():
        return distributed.broadcast_if_initialized(unfinished)[rank::ranks]
    return [i for i in unfinished if i % ranks == rank]


def _plane_rows(plane, alphas, betas, store, shard, progress) -> tuple[np.ndarray, np.ndarray]:
    """(loss, error) arrays [i_beta, i_alpha]: this process evaluates its share of the
    unfinished rows (_my_rows); the rows come back from `store` when there is one."""
    ranks = shard[1]
    rows = {}
    unfinished = [i for i in range(len(betas)) if store is None or store.row(i) is None]
    for i in _my_rows(unfinished, shard):
        beta = betas[i]
        results = plane.evaluate(alphas, [beta])[0]
        rows[i] = [r.loss for r in results], [r.error for r in results]
        if store is not None:
            store.save(i, *rows[i], table=ranks == 1)  # shared: the table is merged at the end
        if progress is not None:
            progress(i + 1, len(betas))
    if store is not None:
        rows = _every_row(store, shard)
    loss, error = (np.array([rows[i][k] for i in range(len(betas))], dtype=float) for k in (0, 1))
    return loss, error


def _every_row(store: PlaneRows, shard: tuple[int, int]) -> dict:
    """Every row of a plane kept in `store`, and its merged table written. Processes sharing
    the plane first wait for one another (a barrier when torch.distributed is initialized;
    separate processes without one see only the rows already finished) and read all row files
    again; a row still missing is an error naming where it should be."""
    rank, ranks = shard
    if ranks > 1:
        distributed.barrier_if_initialized()
        store.reload()
    missing = store.missing()
    if missing:
        raise LinpathError(
            f"{len(missing)} of {len(store.beta)} rows of the plane are not finished "
            f"(first: {store.row_file(missing[0])}) after shard {rank} of {ranks}: run the other "
            "shards, or rerun with one process to finish them"
        )
    store.write_table()
    return store.rows


def _plane_of(model, given: dict, directions, marks, allow_nonfinite, data, grid, span, options) -> Surface:
    """The body of plane() and random_plane(): the `given` states prepared on a copy of
    `model`, directions(states) -> (origin, d_a, d_b), the grid evaluated with the api
    `options` (loss_fn, device, precision, rows_file, shard, ...), the states marked at `marks`."""
    if not isinstance(model, nn.Module):
        raise LinpathError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    work = copy.deepcopy(model)
    states = model_states(work.state_dict(), given, allow_nonfinite=allow_nonfinite, model=work)
    origin, d_a, d_b = directions(states)
    alphas, betas, loss, error, evalset = _evaluate_plane(work, origin, d_a, d_b, data, grid, span, options)
    return Surface(alphas, betas, loss, error, len(evalset), marks, evalset.name, options["precision"])


def plane(
    model: nn.Module,
    origin: StateLike,
    a: StateLike,
    b: StateLike,
    data: DataLike,
    grid: int | tuple[int, int] = (21, 21),
    span: tuple = (-0.5, 1.5),
    loss_fn: BatchFn | None = None,
    error_fn: BatchFn | None = None,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    allow_nonfinite: bool = False,
    rows_file: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] = (0, 1),
    threads: int | None = None,
) -> Surface:
    """Loss (and error) on the plane through three states (Goodfellow et al. 2015):
    θ(α, β) = θ_o + α(θ_a - θ_o) + β(θ_b - θ_o), so θ_o, θ_a, θ_b sit at (0,0), (1,0), (0,1).

    grid is n or (n_alpha, n_beta) evenly spaced points over span = (lo, hi) (both axes) or
    ((lo_alpha, hi_alpha), (lo_beta, hi_beta)). BatchNorm statistics are mixed like the
    weights. rows_file (a CSV) keeps each finished row of β so that a rerun of the same plane
    resumes; progress(row, rows) is called after each row evaluated. shard = (rank, ranks)
    shares the plane among processes (torchrun ranks) through rows_file: this one evaluates
    its share of the unfinished rows (see _my_rows), waits for the others (a barrier when
    torch.distributed is initialized) and returns the whole surface. The other arguments are
    path()'s (threads: torch's CPU threads for this call). Returns a Surface (arrays [i_beta, i_alpha])."""

    def through_given(states: dict) -> tuple[dict, dict, dict]:
        return states["origin"], *through_three(states["origin"], states["state a"], states["state b"])

    with using(threads):
        return _plane_of(
            model,
            {"origin": origin, "state a": a, "state b": b},
            through_given,
            ((0.0, 0.0, "origin"), (1.0, 0.0, "a"), (0.0, 1.0, "b")),
            allow_nonfinite,
            data,
            grid,
            span,
            dict(
                loss_fn=loss_fn,
                error_fn=error_fn,
                device=device,
                batch_size=batch_size,
                precision=precision,
                rows_file=rows_file,
                progress=progress,
                shard=shard,
            ),
        )


def random_plane(
    model: nn.Module,
    center: StateLike,
    data: DataLike,
    grid: int | tuple[int, int] = (21, 21),
    span: tuple = (-1.0, 1.0),
    seed: int = 0,
    loss_fn: BatchFn | None = None,
    error_fn: BatchFn | None = None,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    allow_nonfinite: bool = False,
    rows_file: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] = (0, 1),
    threads: int | None = None,
) -> Surface:
    """Loss (and error) around one state along two random filter-normalized directions (Li et
    al. 2018): θ(α, β) = θ_c + α·δ + β·η, each filter of δ and η scaled to the norm of θ_c's
    filter, biases and BatchNorm entries not moved (loss-landscape's ignore='biasbn'). The
    directions are a pure function of `seed`; the other arguments are plane()'s."""

    def around_center(states: dict) -> tuple[dict, dict, dict]:
        return states["center"], *random_directions(states["center"], seed)

    with using(threads):
        return _plane_of(
            model,
            {"center": center},
            around_center,
            ((0.0, 0.0, "center"),),
            allow_nonfinite,
            data,
            grid,
            span,
            dict(
                loss_fn=loss_fn,
                error_fn=error_fn,
                device=device,
                batch_size=batch_size,
                precision=precision,
                rows_file=rows_file,
                progress=progress,
                shard=shard,
            ),
        )


@dataclasses.dataclass(frozen=True)
class PlaneOptions:
    """How a plane folder is evaluated: its grid (n_alpha, n_beta) and span (lo, hi), a random
    plane's seed (else the plane through three states), the setting's split and precision (the
    one evaluation setting; a plane takes no other of its fields), and where it runs."""

    grid: tuple[int, int] = (21, 21)
    span: tuple[float, float] = (-0.5, 1.5)
    seed: int | None = None  # a random-direction plane (Li et al.) with this seed, else three states
    setting: SweepSetting = SweepSetting()
    device: str = "auto"
    batch_size: int | None = None  # the engine's choice
    allow_nonfinite: bool = False
    shard: tuple[int, int] = (0, 1)  # (rank, ranks) under torchrun: the rows this process evaluates

    def __post_init__(self):
        if self.setting != SweepSetting(split=self.setting.split, precision=self.setting.precision):
            raise LinpathError("a plane takes the setting's split and precision only")

    @property
    def is_main(self) -> bool:
        """Whether this process writes the figure and trajectory (rank 0; every rank shares plane.csv)."""
        return self.shard[0] == 0

    def key(self, states: str) -> str:
        """The folder name of this plane in a run: which states, then every evaluation setting."""
        (na, nb), (lo, hi), s = self.grid, self.span, self.setting
        return f"{states}-{s.split}-{na}x{nb}-span{lo:g}to{hi:g}-{s.precision}"


@dataclasses.dataclass
class PlaneInputs:
    """A plane job resolved from names and files (api/resolve.py's plane_inputs): the network,
    the state files (origin, a, b; or the center), their labels, the evaluation data, the
    folder, and for a run's three-state plane the replicate's kept states to project onto it."""

    net: nn.Module
    states: list
    labels: list[str]
    evalset: object
    folder: Path
    title: str
    kept: dict | None = None  # {t: checkpoint file} of the replicate whose trajectory is drawn


def write_plane_folder(inputs: PlaneInputs, options: PlaneOptions) -> tuple[Surface, list[Path]]:
    """The plane of `inputs` evaluated a row at a time into folder/plane.csv (resumed there;
    rows shared among torchrun ranks), then rank 0's figure and, for a run's plane, the
    replicate's kept states projected onto it (trajectory.csv)."""
    folder = OutDir(inputs.folder)
    if folder.root.exists() and not folder.root.is_dir():
        raise LinpathError(f"--out {folder.root} is a file, not a folder")
    surface = _surface(inputs, options, folder.plane_csv)
    if not options.is_main:
        return surface, []
    written = []
    if inputs.kept and options.seed is None:
        surface = dataclasses.replace(surface, trajectory=_projected(inputs, folder.trajectory_csv))
        written.append(folder.trajectory_csv)
    surface.plot(folder.plane_png, title=inputs.title)
    return surface, [folder.plane_csv, folder.plane_png, *written]


def _surface(inputs: PlaneInputs, options: PlaneOptions, rows_file: Path) -> Surface:
    """The surface through the states (or around the center), its marks labelled."""
    rank, ranks = options.shard
    what = f"plane {inputs.folder.name}" + (f" (rank {rank})" if ranks > 1 else "")
    bar = Progress(what, options.grid[1], "row")
    common = dict(
        grid=options.grid, span=options.span, device=inputs.evalset.inputs.device, batch_size=options.batch_size,
        precision=options.setting.precision, allow_nonfinite=options.allow_nonfinite, rows_file=rows_file,
        progress=lambda done, rows: bar.update(1, f"{what}: row {done}/{rows}"), shard=options.shard,
    )  # fmt: skip
    try:
        if options.seed is None:
            surface = plane(inputs.net, *inputs.states, inputs.evalset, **common)
        else:
            surface = random_plane(inputs.net, inputs.states[0], inputs.evalset, seed=options.seed, **common)
    finally:
        bar.close()
    marks = tuple((a, b, label) for (a, b, _), label in zip(surface.marks, inputs.labels))
    return dataclasses.replace(surface, marks=marks)


def _projected(inputs: PlaneInputs, table: Path) -> tuple:
    """The replicate's kept states projected onto the plane through the three states (written to
    `table`), as Surface.trajectory points."""
    origin, a, b = (load_state_dict(f) for f in inputs.states)
    d_a, d_b = through_three(origin, a, b)
    states = {t: load_state_dict(f) for t, f in inputs.kept.items()}
    rows = plane_coordinates(states, origin, d_a, d_b)
    write_csv(table, PLANE_TRAJECTORY_COLUMNS, rows)
    return tuple((row["alpha"], row["beta"], str(row["t"])) for row in rows)
