"""`linpath plane`: loss and error on the plane through three saved states (Goodfellow et al.
2015), from files on disk or from a run folder (init, final, and another replicate's final or
the state at T), written as plane.csv and plane.png."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from linpath import data as datasets
from linpath.api import Surface, plane
from linpath.commands.path import find_run_spec, load_data, resolve_model
from linpath.config.schedule import Schedule
from linpath.config.spec import read_spec
from linpath.config.steps import Step
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.runtime.device import resolve_device


@dataclasses.dataclass(frozen=True)
class PlaneOptions:
    """How to evaluate a plane: grid (n_alpha, n_beta), span (lo, hi) and the engine's options."""

    grid: tuple[int, int] = (21, 21)
    span: tuple[float, float] = (-0.5, 1.5)
    split: str = "test"
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 1000
    allow_nonfinite: bool = False


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


def _write(surface: Surface, out: Path, title: str) -> list[Path]:
    if out.exists() and not out.is_dir():
        raise LinpathError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    files = [surface.to_csv(out / "plane.csv")]
    surface.plot(out / "plane.png", title=title)
    return [*files, out / "plane.png"]


def _evaluate(net, states: list, labels: list[str], evalset, options: PlaneOptions) -> Surface:
    surface = plane(
        net,
        *states,
        evalset,
        grid=options.grid,
        span=options.span,
        device=evalset.inputs.device,
        batch_size=options.batch_size,
        precision=options.precision,
        allow_nonfinite=options.allow_nonfinite,
    )
    marks = tuple((a, b, label) for (a, b, _), label in zip(surface.marks, labels))
    return dataclasses.replace(surface, marks=marks)


def plane_between_files(
    states: list[str | os.PathLike],
    model: str | None,
    data: str | None,
    out: str | os.PathLike,
    options: PlaneOptions,
    data_root=None,
    num_classes: int | None = None,
) -> tuple[Surface, list[Path]]:
    """The plane through three state files (origin, a, b) of `model` on `data`; without them,
    both come from the linpath run folder holding the origin."""
    if len(states) != 3:
        raise LinpathError(
            f"give three state files (origin, a, b) or one run folder, got {len(states)} paths"
        )
    spec = find_run_spec(states[0]) if model is None or data is None else None
    if (model is None or data is None) and spec is None:
        raise LinpathError(f"--model and --data are needed: {states[0]} is not inside a linpath run folder")
    model = model or spec.model.model
    data = data or spec.data.dataset
    evalset, classes = load_data(data, data_root, options.split, resolve_device(options.device))
    net = resolve_model(model, num_classes or classes)
    labels = [Path(s).stem for s in states]
    surface = _evaluate(net, list(states), labels, evalset, options)
    return surface, _write(surface, Path(out), f"{' / '.join(labels)} ({model}, {evalset.name})")


def _run_states(run: RunDir, schedule: Schedule, r: int, other: int | None, at: str | None):
    """The run's (files, labels): init and final of replicate r, then the other replicate's
    final or r's state at T."""
    if (other is None) == (at is None):
        raise LinpathError("give exactly one of --other-replicate and --at for a run folder")
    final = schedule.total
    files = [(r, 0), (r, final)]
    if other is not None:
        if other == r:
            raise LinpathError(f"--other-replicate {other} is the replicate itself")
        files.append((other, final))
    else:
        t = Step.parse(at).to_iterations(schedule.iterations_per_epoch)
        if not 0 < t < final:
            raise LinpathError(f"--at {at} is step {t}; it must lie strictly between 0 and the final {final}")
        files.append((r, t))
    for q, t in files:
        if not run.checkpoint(q, t).is_file():
            kept = ", ".join(map(str, run.saved_steps(q))) or "none"
            raise LinpathError(
                f"replicate {q} has no checkpoint at t={t} ({run.checkpoint(q, t)}; kept: {kept})"
            )
    labels = [f"r{q} t={t}" for q, t in files]
    return [run.checkpoint(q, t) for q, t in files], labels


def plane_of_run(
    run_dir: str | os.PathLike,
    replicate: int,
    other_replicate: int | None,
    at: str | None,
    options: PlaneOptions,
    out: str | os.PathLike | None = None,
    data_root=None,
) -> tuple[Surface, list[Path]]:
    """The plane of a run folder through replicate r's init and final and a third state (see
    _run_states); written to `out`, by default <run>/plane/r<r>-<other or at>/."""
    run = RunDir(run_dir)
    spec = read_spec(run)
    source = datasets.load(spec.data.dataset, data_root)
    schedule = Schedule.of(spec, source.num_train_examples)
    files, labels = _run_states(run, schedule, replicate, other_replicate, at)
    evalset = source.eval_set(options.split, resolve_device(options.device))
    net = resolve_model(spec.model.model, source.num_classes)
    surface = _evaluate(net, files, labels, evalset, options)
    third = f"r{other_replicate}" if other_replicate is not None else f"at{at}"
    folder = Path(out) if out is not None else run.root / "plane" / f"r{replicate}-{third}"
    return surface, _write(surface, folder, f"{' / '.join(labels)} ({spec.model.model}, {evalset.name})")
