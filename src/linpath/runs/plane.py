"""`linpath plane`: loss and error on the plane through three saved states (Goodfellow et al.
2015), or around one state along two random filter-normalized directions (Li et al. 2018),
from files on disk or from a run folder, written as plane.csv and plane.png.

In a run folder each plane is a setting of its own, <run>/plane/<key>/ with the states, split,
grid, span and precision in the key, so two settings never share a table; each finished row is
kept (plane.rows/, merged into plane.csv) and a rerun resumes it. Under torchrun the ranks share
the rows and rank 0 draws the figure. A run's three-state plane also shows replicate r's kept
checkpoints projected onto it (trajectory.csv)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import linpath.data as datasets
from linpath.analysis.trajectory import PLANE_TRAJECTORY_COLUMNS, plane_coordinates
from linpath.api import Surface, plane, random_plane
from linpath.api.resolve import external_inputs, find_run_spec, load_data, resolve_model
from linpath.config.external import is_external
from linpath.config.schedule import Schedule
from linpath.config.spec import read_spec
from linpath.config.steps import Step
from linpath.engine.plane import through_three
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.io.tables import write_csv
from linpath.io.tensors import load_state_dict
from linpath.runtime.device import resolve_device
from linpath.runtime.progress import Progress


@dataclasses.dataclass(frozen=True)
class PlaneOptions:
    """How to evaluate a plane: grid (n_alpha, n_beta), span (lo, hi) and the engine's options."""

    grid: tuple[int, int] = (21, 21)
    span: tuple[float, float] = (-0.5, 1.5)
    split: str = "test"
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int | None = None  # the engine's choice
    allow_nonfinite: bool = False
    seed: int | None = None  # a random-direction plane (Li et al.) with this seed, else three states
    shard: tuple[int, int] = (0, 1)  # (rank, ranks) under torchrun: the rows this process evaluates

    @property
    def is_main(self) -> bool:
        """Whether this process writes the figure and trajectory (rank 0; every rank shares plane.csv)."""
        return self.shard[0] == 0

    def key(self, states: str) -> str:
        """The folder name of this plane in a run: which states, then every evaluation setting."""
        (na, nb), (lo, hi) = self.grid, self.span
        return f"{states}-{self.split}-{na}x{nb}-span{lo:g}to{hi:g}-{self.precision}"


def parse_pair(text: str, kind, what: str) -> tuple:
    """'21' -> (21, 21); '21,15' -> (21, 15); for --grid (int) and --span (float)."""
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


def _check_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise LinpathError(f"--out {out} is a file, not a folder")
    return out


def _row_progress(what: str, rows: int) -> tuple:
    """A progress callback for plane rows, a line each off a terminal (a plane row takes
    seconds to minutes), and its close."""
    bar = Progress(what, rows, "row")
    return (lambda done, rows: bar.update(1, f"{what}: row {done}/{rows}")), bar.close


def _evaluate(net, states: list, labels: list[str], evalset, options: PlaneOptions, out: Path) -> Surface:
    """The surface of three states (or of one, with options.seed), its rows kept in out/plane.csv
    (shared with the other ranks under torchrun; each rank reports its own rows)."""
    rank, ranks = options.shard
    progress, close = _row_progress(
        f"plane {out.name}" + (f" (rank {rank})" if ranks > 1 else ""), options.grid[1]
    )
    common = dict(
        grid=options.grid,
        span=options.span,
        device=evalset.inputs.device,
        batch_size=options.batch_size,
        precision=options.precision,
        allow_nonfinite=options.allow_nonfinite,
        rows_file=_check_out(out) / "plane.csv",
        progress=progress,
        shard=options.shard,
    )
    try:
        if options.seed is None:
            surface = plane(net, *states, evalset, **common)
        else:
            surface = random_plane(net, states[0], evalset, seed=options.seed, **common)
    finally:
        close()
    marks = tuple((a, b, label) for (a, b, _), label in zip(surface.marks, labels))
    return dataclasses.replace(surface, marks=marks)


def _write(surface: Surface, out: Path, title: str, options: PlaneOptions) -> list[Path]:
    """The figure, drawn by rank 0 only; the files written (none on the other ranks)."""
    if not options.is_main:
        return []
    surface.plot(out / "plane.png", title=title)
    return [out / "plane.csv", out / "plane.png"]


def plane_between_files(
    states: list[str | os.PathLike],
    model: str | None,
    data: str | None,
    out: str | os.PathLike,
    options: PlaneOptions,
    data_root=None,
    num_classes: int | None = None,
) -> tuple[Surface, list[Path]]:
    """The plane through three state files (origin, a, b), or around one (with options.seed),
    of `model` on `data`; without them, both come from the linpath run folder holding the
    first state."""
    wanted = 1 if options.seed is not None else 3
    if len(states) != wanted:
        what = "one state file (the center)" if wanted == 1 else "three state files (origin, a, b)"
        raise LinpathError(f"give {what} or one run folder, got {len(states)} paths")
    spec = find_run_spec(states[0]) if model is None or data is None else None
    if (model is None or data is None) and spec is None:
        raise LinpathError(f"--model and --data are needed: {states[0]} is not inside a linpath run folder")
    model = model or spec.model.model
    data = data or spec.data.dataset
    evalset, classes = load_data(data, data_root, options.split, resolve_device(options.device))
    net = resolve_model(model, num_classes or classes)
    labels = [Path(s).stem for s in states]
    surface = _evaluate(net, list(states), labels, evalset, options, Path(out))
    return surface, _write(surface, Path(out), f"{' / '.join(labels)} ({model}, {evalset.name})", options)


def _run_states(run: RunDir, schedule: Schedule, r: int, other: int | None, at: str | None, random: bool):
    """The run's (replicate, step) pairs and the plane's name: for three states, init and final
    of replicate r, then the other replicate's final or r's state at T; for a random plane, the
    center: r's final, or its state at T."""
    final = schedule.total
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


def _projected_trajectory(run: RunDir, r: int, files: list[Path], folder: Path) -> tuple:
    """Replicate r's kept checkpoints projected onto the plane through `files` (written to
    folder/trajectory.csv), as Surface.trajectory points."""
    origin, a, b = (load_state_dict(f) for f in files)
    d_a, d_b = through_three(origin, a, b)
    states = {t: load_state_dict(run.checkpoint(r, t)) for t in run.saved_steps(r)}
    rows = plane_coordinates(states, origin, d_a, d_b)
    write_csv(folder / "trajectory.csv", PLANE_TRAJECTORY_COLUMNS, rows)
    return tuple((row["alpha"], row["beta"], str(row["t"])) for row in rows)


def _run_inputs(run: RunDir, spec, model: str | None, data: str | None, options: PlaneOptions, data_root):
    """(schedule, evaluation set, network, model name) of a run: a preset's from its spec, an
    external run's from --model and --data (its schedule: its total steps, no epochs)."""
    dev = resolve_device(options.device)
    if not is_external(spec):
        if model is not None or data is not None:
            raise LinpathError(f"--model and --data are for external runs; {run.root}'s spec builds both")
        source = datasets.load(spec.data.dataset, data_root)
        net = resolve_model(spec.model.model, source.num_classes)
        return (
            Schedule.of(spec, source.num_train_examples),
            source.eval_set(options.split, dev),
            net,
            spec.model.model,
        )
    inputs = external_inputs(model, data, data_root, options.split)
    schedule = Schedule(0, spec.total_steps, 0.0, (), 1.0, 0)
    return schedule, inputs.source().eval_set(options.split, dev), inputs.make_model(), model


def plane_of_run(
    run_dir: str | os.PathLike,
    replicate: int,
    other_replicate: int | None,
    at: str | None,
    options: PlaneOptions,
    out: str | os.PathLike | None = None,
    data_root=None,
    model: str | None = None,
    data: str | None = None,
) -> tuple[Surface, list[Path]]:
    """The plane of a run folder (see _run_states), written to `out`, by default to the
    setting's own folder <run>/plane/<key>/ (resumed when it holds part of this plane). An
    external run (config/external.py) needs `model` and `data` (--model, --data)."""
    run = RunDir(run_dir)
    spec = read_spec(run, external_ok=model is not None or data is not None)
    schedule, evalset, net, model_name = _run_inputs(run, spec, model, data, options, data_root)
    pairs, name = _run_states(run, schedule, replicate, other_replicate, at, options.seed is not None)
    if options.seed is not None:
        name += f"-seed{options.seed}"
    files = _checkpoints(run, pairs)
    labels = [f"r{q} t={t}" for q, t in pairs]
    folder = Path(out) if out is not None else run.plane_dir(options.key(name))
    surface = _evaluate(net, files, labels, evalset, options, folder)
    written = []
    if options.seed is None and options.is_main:
        surface = dataclasses.replace(
            surface, trajectory=_projected_trajectory(run, replicate, files, folder)
        )
        written.append(folder / "trajectory.csv")
    title = f"{' / '.join(labels)} ({model_name}, {evalset.name})"
    return surface, _write(surface, folder, title, options) + written
