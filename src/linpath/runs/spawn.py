"""Spawning (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis").

From replicate r's state at step T, train K copies ("children") to the end of the schedule,
each with its own data order and augmentation, then evaluate the linear path between every
pair of the children's final states. The error barrier along it,
    instability = max_x E(θ(x)) - (E(θ(0)) + E(θ(1))) / 2,
is the paper's measure; over T it shows when training becomes stable to SGD noise.

The children need the optimizer state at T, but a run keeps model-only checkpoints. SGD
without momentum is stateless; with momentum, the parent's momentum buffer is rebuilt by
replaying replicate r from step 0 to T (training is a pure function of seed and step, so the
replay is exact on the same device: the replayed weights are compared with the checkpoint and
the difference recorded). `momentum_state="reset"` restarts the momentum at zero instead.

    RUN_DIR/spawn/r<r>-t<T>/
      spawn.json            parent, T, the children's data seeds, where the optimizer state came from
      parent.pt             the state every child starts from: model, optimizer, step
      child-<k>/            child k in the replicate layout: checkpoints/, train_log.csv, DONE
      <setting>/            the children's paths under one sweep setting (its key, as the sweep's):
        path-c<i>-c<j>.csv  the path between children i and j (paths.csv's columns; replicate r, t T)
        path-c<i>-c<j>.png
        instability.csv     one row per pair
    RUN_DIR/spawn/instability.csv, instability.png   every spawn of the run: barrier vs T, per setting

The paths are evaluated as the sweep evaluates a setting (sweep/evaluation.py: the same subset,
recompute batches, precision and parameter subset), so each setting is its own table.
"""

from __future__ import annotations

import csv
import json
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np

from linpath.analysis.metrics import metric
from linpath.api import PathCurve
from linpath.config.schedule import Schedule
from linpath.config.spec import read_spec
from linpath.config.steps import Step
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tables import write_csv
from linpath.io.jsonfile import read_json
from linpath.io.tensors import load_state_dict, load_tensors, save_tensors
from linpath.runtime.device import resolve_device
from linpath.runtime.seeds import derived_seed
from linpath.sweep.grids import Grid
from linpath.sweep.run import setting_job
from linpath.sweep.setting import SweepSetting
from linpath.train.loop import train_replicate

MOMENTUM_STATES = ("replay", "reset")
INSTABILITY_COLUMNS = [
    "setting",
    "replicate",
    "t",
    "child_a",
    "child_b",
    "split",
    "bn",
    "points",
    "error_barrier",
    "loss_barrier",
    "error_rise_over_chord",
    "loss_rise_over_chord",
    "error_a",
    "error_b",
    "loss_a",
    "loss_b",
]


class SpawnDir(RunDir):
    """A spawn's folder: the replicate layout of RunDir, with child-<k> for replicate-<k>."""

    def replicate_dir(self, k: int) -> Path:
        return self.root / f"child-{k}"

    @property
    def parent_file(self) -> Path:
        return self.root / "parent.pt"

    @property
    def info_file(self) -> Path:
        return self.root / "spawn.json"

    def pair_csv(self, setting: str, a: int, b: int) -> Path:
        return self.root / setting / f"path-c{a}-c{b}.csv"

    def instability(self, setting: str) -> Path:
        return self.root / setting / "instability.csv"


def spawn_dir(run: RunDir, r: int, t: int) -> SpawnDir:
    return SpawnDir(run.spawn_dir(r, t))


def child_seed(parent_seed: int, k: int) -> int:
    """Child k's data-order seed: independent of the parent's and of the other children's, and
    the same for every T (so children at different T share batches after the later T)."""
    return derived_seed(parent_seed, "spawn-child", k)


def parent_state(
    spec,
    run: RunDir,
    r: int,
    t: int,
    source,
    sdir: SpawnDir,
    device: str = "cpu",
    momentum_state: str = "replay",
    progress: bool = False,
) -> tuple[dict, dict]:
    """The state children start from ({"model", "optimizer" or None, "step"}) and how its
    optimizer part was obtained."""
    model = load_state_dict(run.checkpoint(r, t))
    if spec.train.momentum == 0:
        return {"model": model, "optimizer": None, "step": t}, {
            "optimizer_state": "none needed (SGD without momentum)"
        }
    if t == 0:
        return {"model": model, "optimizer": None, "step": t}, {
            "optimizer_state": "none yet (no update before step 0)"
        }
    if momentum_state == "reset":
        return {"model": model, "optimizer": None, "step": t}, {
            "optimizer_state": "reset: momentum restarted at zero at T"
        }
    scratch = RunDir(sdir.root / "replay")
    train_replicate(spec, scratch, r, source, device=device, progress=progress, stop_after=t)
    replayed = load_tensors(scratch.resume_file(r))
    if int(replayed["step"]) != t:
        raise LinpathError(f"replaying replicate {r} stopped at step {replayed['step']}, not {t}")
    diff = max(
        float((replayed["model"][k].double() - v.double()).abs().max()) if v.is_floating_point() else 0.0
        for k, v in model.items()
    )
    shutil.rmtree(scratch.root, ignore_errors=True)
    info = {
        "optimizer_state": "replayed from step 0 (exact)" if diff == 0 else "replayed from step 0",
        "replay_max_abs_weight_difference": diff,
    }
    return {"model": model, "optimizer": replayed["optimizer"], "step": t}, info


def spawn_steps(run: RunDir, text: str, source) -> list[int]:
    """--at: comma-separated steps ("0,100,1000", "2ep") in iterations, ascending."""
    schedule = Schedule.of(read_spec(run), source.num_train_examples)
    steps = sorted(
        {
            Step.parse(part.strip()).to_iterations(schedule.iterations_per_epoch)
            for part in str(text).split(",")
            if part.strip()
        }
    )
    if not steps:
        raise LinpathError(f"--at needs at least one step, got {text!r}")
    return steps


def spawn(
    run_dir: str | Path,
    t: int,
    source,
    replicate: int = 0,
    children: int = 2,
    device: str = "cpu",
    momentum_state: str = "replay",
    setting: SweepSetting | None = None,
    progress: bool = True,
) -> list[dict]:
    """Spawn `children` copies of replicate `replicate` at step t, train them, evaluate every
    pair's path under `setting` (default: the test split, 25 points); returns the instability
    rows (and writes them, see the module docstring). Resumes: finished children are reused, a
    killed child resumes from its resume file, a finished setting's rows are read back."""
    run = RunDir(run_dir)
    spec = read_spec(run)
    schedule = Schedule.of(spec, source.num_train_examples)
    _check_spawn(run, t, replicate, children, momentum_state, schedule.total)
    setting = setting or SweepSetting(grid=Grid(points=25))
    sdir = spawn_dir(run, replicate, t)
    seeds = [child_seed(spec.train.seed + replicate, k) for k in range(children)]
    with sdir.lock("spawn"):
        start = _parent(spec, run, replicate, t, source, sdir, device, momentum_state, progress, seeds)
        for k, s in enumerate(seeds):
            train_replicate(spec, sdir, k, source, device=device, progress=progress, data_seed=s, start=start)
        rows = _finished_rows(sdir, children, setting)
        if rows is None:
            rows = _evaluate_pairs(
                spec, sdir, replicate, t, schedule.total, children, source, device, setting
            )
    write_summary(run)
    return rows


def _check_spawn(run: RunDir, t: int, replicate: int, children: int, momentum_state: str, total: int) -> None:
    if children < 2:
        raise LinpathError(f"--children must be at least 2 (a path needs two endpoints), got {children}")
    if momentum_state not in MOMENTUM_STATES:
        raise LinpathError(f"unknown momentum state {momentum_state!r} (known: {', '.join(MOMENTUM_STATES)})")
    saved = run.saved_steps(replicate)
    if not saved:
        raise LinpathError(f"{run.root} has no checkpoints of replicate {replicate}; train it first")
    if t not in saved:
        raise LinpathError(
            f"replicate {replicate} has no checkpoint at T={t} (kept: {', '.join(map(str, saved))})"
        )
    if t >= total:
        raise LinpathError(f"T={t} is the end of training ({total} iterations); spawn from an earlier step")


def _parent(
    spec, run: RunDir, r: int, t: int, source, sdir: SpawnDir, device, momentum_state, progress, seeds
):
    """The state every child starts from (made once, then read back) and spawn.json."""
    if sdir.parent_file.exists() and sdir.info_file.exists():  # else killed between the two: made again
        start = load_tensors(sdir.parent_file)
        info = read_json(sdir.info_file, dict)
    else:
        start, how = parent_state(spec, run, r, t, source, sdir, device, momentum_state, progress)
        save_tensors(sdir.parent_file, start)
        info = {
            "replicate": r,
            "t": t,
            "parent_seed": spec.train.seed + r,
            "momentum": spec.train.momentum,
            "momentum_state": momentum_state,
            **how,
        }
    if info.get("momentum_state", momentum_state) != momentum_state and spec.train.momentum and t:
        raise LinpathError(
            f"{sdir.root} was spawned with momentum state {info['momentum_state']!r}; "
            f"delete it to spawn again with {momentum_state!r}"
        )
    info["children"] = {str(k): {"data_seed": s} for k, s in enumerate(seeds)}
    atomic_write_text(sdir.info_file, json.dumps(info, indent=2) + "\n")
    return start


def _finished_rows(sdir: SpawnDir, children: int, setting: SweepSetting) -> list[dict] | None:
    """The rows of an earlier evaluation of the same setting and children, else None."""
    path = sdir.instability(setting.key)
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    pairs = [(str(a), str(b)) for a, b in combinations(range(children), 2)]
    if [(d["child_a"], d["child_b"]) for d in rows] != pairs:
        return None
    ints = ("replicate", "t", "child_a", "child_b", "points")
    text = ("setting", "split", "bn")
    return [{k: int(v) if k in ints else v if k in text else float(v) for k, v in d.items()} for d in rows]


def _evaluate_pairs(spec, sdir: SpawnDir, r, t, final, children, source, device, setting) -> list[dict]:
    """Every pair of children's final states on a line job of the setting (the sweep's entry)."""
    job = setting_job(spec, setting, source, resolve_device(device))
    rows = []
    for a, b in combinations(range(children), 2):
        start = load_state_dict(sdir.checkpoint(a, final))
        end = load_state_dict(sdir.checkpoint(b, final))
        xs, results = job.curve(start, end, setting.grid)
        curve = PathCurve.of(
            xs, results, len(job.engine.labels), setting.bn, setting.precision, setting.split
        )
        curve.to_csv(sdir.pair_csv(setting.key, a, b), replicate=r, t=t)
        curve.plot(
            sdir.pair_csv(setting.key, a, b).with_suffix(".png"),
            title=f"children {a} and {b} of replicate {r} spawned at T = {t} ({setting.key})",
        )
        rows.append(_row(curve, setting.key, r, t, a, b))
    _write_rows(sdir.instability(setting.key), rows)
    return rows


def _row(curve: PathCurve, key: str, r: int, t: int, a: int, b: int) -> dict:
    m = curve.metrics()
    return {
        "setting": key,
        "replicate": r,
        "t": t,
        "child_a": a,
        "child_b": b,
        "split": curve.split,
        "bn": curve.bn,
        "points": len(curve.x),
        "error_barrier": metric("barrier", curve.x, curve.error),
        "loss_barrier": metric("barrier", curve.x, curve.loss),
        "error_rise_over_chord": m["error"]["rise_over_chord"],
        "loss_rise_over_chord": m["loss"]["rise_over_chord"],
        "error_a": float(curve.error[0]),
        "error_b": float(curve.error[-1]),
        "loss_a": float(curve.loss[0]),
        "loss_b": float(curve.loss[-1]),
    }


def _write_rows(path: Path, rows: list[dict]) -> None:
    write_csv(path, INSTABILITY_COLUMNS, rows)


def write_summary(run: RunDir) -> Path | None:
    """RUN_DIR/spawn/instability.csv and .png from every spawn's rows (error barrier vs T)."""
    folder = run.spawn_root
    rows = []
    for path in sorted(folder.glob("r*-t*/*/instability.csv")):
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    if not rows:
        return None
    rows.sort(
        key=lambda d: (
            d["setting"],
            int(d["t"]),
            int(d["replicate"]),
            int(d["child_a"]),
            int(d["child_b"]),
        )
    )
    write_csv(folder / "instability.csv", INSTABILITY_COLUMNS, rows)
    _figure(rows, folder / "instability.png")
    return folder / "instability.csv"


def _figure(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot(1, 1, 1)
    for i, key in enumerate(sorted({d["setting"] for d in rows})):
        group = [d for d in rows if d["setting"] == key]
        ts = sorted({int(d["t"]) for d in group})
        values = [[float(d["error_barrier"]) for d in group if int(d["t"]) == t] for t in ts]
        mean = np.array([np.mean(v) for v in values])
        std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
        positions = np.array([t if t > 0 else 0.5 for t in ts], float)  # t = 0 at the left edge
        ax.errorbar(positions, mean, yerr=std, marker="o", capsize=3, color=f"C{i}", label=key)
    ax.set_xscale("log")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xlabel("spawn step T (log scale; T = 0 at the left edge)")
    ax.set_ylabel("error barrier between children")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("instability: max error along the path minus the endpoints' mean (mean ± std)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
