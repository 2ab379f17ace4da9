"""The stages as functions: create/open a run, train its replicates, sweep, report.

The CLI is a thin layer over these; each stage reads what the previous one left on disk, so
each can be run alone, re-run, or resumed.
"""

from __future__ import annotations

from pathlib import Path

from . import data as datasets
from .analysis import load_curves, metric_rows, write_metrics
from .distributed import World
from .errors import LinpathError
from .plots import all_figures
from .report import CLAIMS, write_report
from .spec import Spec
from .store import RunDir
from .sweep import SweepSetting, merge_paths, run_sweep
from .train import train_replicate


def open_run(spec: Spec, out: str | Path = "runs") -> RunDir:
    """The run folder for `spec`, created if new; an existing one is reused (and its
    replicate count raised if more are asked for)."""
    run = RunDir(Path(out) / spec.run_name)
    if run.spec_path.exists():
        existing = run.read_spec()
        if existing.replicates >= spec.replicates:
            return run
    run.write_spec(spec)
    return run


def train(spec: Spec, out: str | Path = "runs", data_root=None, device: str = "cpu", progress: bool = True,
          world: World = World()) -> RunDir:
    """Train every replicate not yet finished (under torchrun: all ranks together, one
    replicate at a time, with DistributedDataParallel)."""
    run = open_run(spec, out) if world.is_main else RunDir(Path(out) / spec.run_name)
    world.barrier()  # the run folder exists before any rank reads it
    replicates = range(spec.replicates)
    if world.broadcast(all(run.done_marker(r).exists() for r in replicates)):
        return run
    source = datasets.load(spec.data.dataset, data_root, image_size=spec.data.image_size)
    with run.lock(f"train-rank{world.rank}"):
        if world.is_main:
            for r in replicates:
                run.remove_stale_temporaries(run.replicate_dir(r))
        for r in replicates:
            train_replicate(spec, run, r, source, device=world.device(device), progress=progress, world=world)
    return run


def sweep(run_dir: str | Path, setting: SweepSetting, data_root=None, device: str = "cpu",
          from_steps: list[int] | None = None, progress: bool = True, world: World = World(),
          compile: bool = False) -> RunDir:
    """Evaluate every unfinished path; under torchrun the items are shared among the ranks
    and rank 0 merges paths.csv once all are done."""
    run = RunDir(run_dir)
    spec = run.read_spec()
    source = datasets.load(spec.data.dataset, data_root, image_size=spec.data.image_size)
    with run.lock(f"sweep-rank{world.rank}"):
        if world.is_main:  # other ranks write nothing before rank 0 has listed the work
            run.remove_stale_temporaries(run.sweep_dir / setting.key)
        run_sweep(run, setting, source, device=world.device(device), from_steps=from_steps, progress=progress, compile=compile,
                  world=world)
    world.barrier()
    if world.is_main:
        merge_paths(run)
    return run


def report(run_dir: str | Path, split: str = "test", bn: str = "interpolate", metric: str = "rise_over_start") -> Path:
    run = RunDir(run_dir)
    spec = run.read_spec()
    if not run.paths_csv.exists() and run.sweep_dir.exists():
        merge_paths(run)
    curves = load_curves(run, split, bn)
    rows = metric_rows(curves)
    write_metrics(run, rows)
    claims = CLAIMS.get(spec.preset)
    title = claims.setting if claims else spec.preset
    figures = all_figures(curves, rows, title, run.figures_dir, metric)
    write_report(run, curves, rows, figures, spec.preset, title)
    return run.report


__all__ = ["open_run", "train", "sweep", "report", "LinpathError"]
