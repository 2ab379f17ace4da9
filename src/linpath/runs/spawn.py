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
        instability.csv     one row per pair (digests/instability.sha256: reused only as written)
    RUN_DIR/spawn/instability.csv, instability.png   every spawn of the run: barrier vs T, per setting

Instability to a perturbation (Altıntaş, Kwok et al. 2025) instead of SGD noise:
`noise=SpawnNoise(perturb=EPS)` trains every child on the parent's own data order from θ_T
perturbed by noise of norm EPS × each parameter tensor's norm (train/perturb.py; child k's
noise seeded by the parent's seed and k), in RUN_DIR/spawn/r<r>-t<T>-perturb<EPS>/; EPS = 0
gives children identical to the parent's own continuation. `align=True` adds, per pair, the
path from child a to child b after weight matching (engine/align.py; path-c<i>-c<j>-aligned.csv).
Each row of instability.csv names its noise ("sgd" or "perturb:EPS") and whether it is aligned;
RUN_DIR/spawn/instability_curve.csv holds the curve against T with 95 % intervals and
stability.csv where it falls below 2 % (analysis/instability.py).

The paths are evaluated as the sweep evaluates a setting (sweep/engine_entry.py: the same subset,
recompute batches, precision and parameter subset), so each setting is its own table.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
import sys
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

import linpath.data as datasets
from linpath.analysis.decisions import DELTA_STABILITY
from linpath.analysis.instability import CURVE_COLUMNS, STABILITY_COLUMNS, instability_curve, stability_rows
from linpath.analysis.metrics import metric
from linpath.api.curve import PathCurve
from linpath.config.schedule import Schedule
from linpath.config.spec import build_model, read_spec
from linpath.config.steps import Step
from linpath.engine.align import align_states
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.jsonfile import read_json
from linpath.io.rundir import RunDir, SpawnDir
from linpath.io.tables import csv_text, write_csv
from linpath.io.tensors import load_state_dict, load_tensors, save_tensors
from linpath.runtime.device import resolve_device
from linpath.runtime.seeds import derived_seed
from linpath.sweep.grids import Grid
from linpath.sweep.items import digest_problem, write_item_bytes
from linpath.sweep.run import setting_job
from linpath.sweep.setting import SweepSetting
from linpath.train.loop import Branch, train_replicate
from linpath.train.perturb import check_eps, parameter_names, perturb_state

MOMENTUM_STATES = ("replay", "reset")
MAX_CHILDREN = 32  # children per spawn: each trains to the end of the schedule; 496 pairs are evaluated
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
    "noise",
    "aligned",
]


@dataclass(frozen=True)
class SpawnNoise:
    """What makes children differ: their data orders (perturb None: Frankle et al. 2020's SGD
    noise), or a perturbation of θ_T of relative size `perturb` on the parent's data order; and
    whether each pair's barrier is also measured after weight matching (`align`)."""

    perturb: float | None = None
    align: bool = False

    def __post_init__(self):
        if self.perturb is not None:
            check_eps(self.perturb)

    @property
    def kind(self) -> str:
        """The rows' noise column: "sgd" or "perturb:EPS"."""
        return "sgd" if self.perturb is None else f"perturb:{self.perturb:g}"

    @property
    def folder(self) -> str:
        """The spawn folder's suffix ("" for SGD noise, whose folders keep their old names)."""
        return "" if self.perturb is None else f"perturb{self.perturb:g}"


def spawn_dir(run: RunDir, r: int, t: int, noise: SpawnNoise | None = None) -> SpawnDir:
    return SpawnDir(run.spawn_dir(r, t, (noise or SpawnNoise()).folder))


def child_seed(parent_seed: int, k: int) -> int:
    """Child k's data-order seed: independent of the parent's and of the other children's, and
    the same for every T (so children at different T share batches after the later T)."""
    return derived_seed(parent_seed, "spawn-child", k)


def parent_state(
    spec, run: RunDir, r: int, t: int, source, sdir: SpawnDir, options: SpawnOptions | None = None
):
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
    options = options or SpawnOptions()
    if options.momentum_state == "reset":
        return {"model": model, "optimizer": None, "step": t}, {
            "optimizer_state": "reset: momentum restarted at zero at T"
        }
    scratch = RunDir(sdir.root / "replay")
    train_replicate(spec, scratch, r, source, options.device, options.progress, branch=Branch(stop_after=t))
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
    """--at: comma-separated steps ("0,100,1000", "2ep") in iterations, ascending, each a kept
    step (a checkpoint of some replicate) before the end, all checked before any spawn trains."""
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
    kept = sorted(set().union(*(run.saved_steps(r) for r in run.started_replicates())))
    wrong = [t for t in steps if t not in kept or t >= schedule.total]
    if wrong:  # all checked before the first spawn trains anything
        raise LinpathError(
            f"--at {wrong[0]} is not a kept step before the end of training ({schedule.total}); "
            f"spawns start from a kept state: {', '.join(map(str, [t for t in kept if t < schedule.total]))}"
        )
    return steps


@dataclass(frozen=True)
class SpawnOptions:
    """How children are spawned, apart from the setting of their paths: from which replicate, how
    many, what makes them differ (noise), how the parent's momentum is restored at T (replayed
    exactly, or reset), and where they train."""

    replicate: int = 0
    children: int = 2
    momentum_state: str = "replay"
    noise: SpawnNoise = SpawnNoise()
    device: str = "cpu"
    progress: bool = True


@dataclass
class _Spawn:
    """One spawn being made: the run and its spec, the parent (replicate, T), the data, its
    folder, the children's data-order seeds and the run's last step."""

    run: RunDir
    spec: object
    t: int
    source: object
    options: SpawnOptions
    sdir: SpawnDir
    seeds: list[int]
    total: int

    @property
    def parent_seed(self) -> int:
        return self.spec.train.seed + self.options.replicate


def spawn(
    run_dir: str | Path, t: int, source, setting: SweepSetting | None = None, options=SpawnOptions()
) -> list[dict]:
    """Spawn options.children copies of replicate options.replicate at step t, train them, and
    evaluate every pair's path under `setting` (default: the test split, 25 points); returns the
    instability rows (and writes them, see the module docstring). options.noise chooses what
    makes the children differ (default: their data orders). Resumes: finished children are
    reused, a killed child resumes from its resume file, a finished setting's rows are read back."""
    job = _spawn_of(RunDir(run_dir), t, source, options)
    setting = setting or SweepSetting(grid=Grid(points=25))
    with job.sdir.lock("spawn"):
        start = _parent(job)
        names = parameter_names(build_model(job.spec, source.num_classes, seed=0))
        for k, s in enumerate(job.seeds):
            # a copy each: loading the optimizer's state keeps its tensors, which training then
            # updates in place (the next child would start from this one's last momentum)
            begin = copy.deepcopy(start)
            if options.noise.perturb is not None:
                seed = perturb_seed(job.parent_seed, k)
                begin["model"] = perturb_state(begin["model"], names, options.noise.perturb, seed)
            branch = Branch(begin, data_seed=s)
            train_replicate(job.spec, job.sdir, k, source, options.device, options.progress, branch=branch)
        rows = _finished_rows(job.sdir, options.children, setting, options.noise)
        if rows is None:
            rows = _evaluate_pairs(job, setting)
    write_summary(job.run)
    return rows


def spawn_at(run_dir, at: str, setting: SweepSetting, options: SpawnOptions, data_root=None):
    """`linpath spawn`: a spawn at each step of `at` ("0,100,2ep"), the run's data set read from
    `data_root`; yields (T, that spawn's rows)."""
    run = RunDir(run_dir)
    source = datasets.load(read_spec(run).data.dataset, data_root)
    for t in spawn_steps(run, at, source):
        yield t, spawn(run.root, t, source, setting, options)


def _spawn_of(run: RunDir, t: int, source, options: SpawnOptions) -> _Spawn:
    """The spawn of `options` at t, checked: its folder, and the children's data-order seeds
    (the parent's own under a perturbation, independent ones under SGD noise)."""
    spec = read_spec(run)
    total = Schedule.of(spec, source.num_train_examples).total
    _check_spawn(run, t, options, total)
    parent = spec.train.seed + options.replicate
    perturbed = options.noise.perturb is not None
    seeds = [parent if perturbed else child_seed(parent, k) for k in range(options.children)]
    sdir = spawn_dir(run, options.replicate, t, options.noise)
    return _Spawn(run, spec, t, source, options, sdir, seeds, total)


def perturb_seed(parent_seed: int, k: int) -> int:
    """Child k's perturbation seed (independent of its data order, the parent's)."""
    return derived_seed(parent_seed, "spawn-perturb", k)


def _check_spawn(run: RunDir, t: int, options: SpawnOptions, total: int) -> None:
    replicate, children, momentum_state = options.replicate, options.children, options.momentum_state
    if isinstance(children, bool) or not isinstance(children, int) or children < 2:
        raise LinpathError(f"--children must be at least 2 (a path needs two endpoints), got {children!r}")
    if children > MAX_CHILDREN:
        raise LinpathError(
            f"--children {children} is more than {MAX_CHILDREN}: each child is a full training to the end "
            f"of the schedule and every pair a path ({children * (children - 1) // 2} of them)"
        )
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


def _parent(job: _Spawn) -> dict:
    """The state every child starts from (made once, then read back) and spawn.json."""
    sdir, momentum_state, r, t = job.sdir, job.options.momentum_state, job.options.replicate, job.t
    if sdir.parent_file.exists() and sdir.info_file.exists():  # else killed between the two: made again
        start = load_tensors(sdir.parent_file)
        info = _spawn_info(sdir)
    else:
        start, how = parent_state(job.spec, job.run, r, t, job.source, sdir, job.options)
        save_tensors(sdir.parent_file, start)
        info = {
            "replicate": r,
            "t": t,
            "parent_seed": job.parent_seed,
            "momentum": job.spec.train.momentum,
            "momentum_state": momentum_state,
            **how,
        }
    if info.get("momentum_state", momentum_state) != momentum_state and job.spec.train.momentum and t:
        raise LinpathError(
            f"{sdir.root} was spawned with momentum state {info['momentum_state']!r}; "
            f"delete it to spawn again with {momentum_state!r}"
        )
    info["noise"] = job.options.noise.kind
    info["children"] = {str(k): {"data_seed": s} for k, s in enumerate(job.seeds)}
    if job.options.noise.perturb is not None:
        info["perturbation"] = "each parameter tensor W + EPS·‖W‖·g/‖g‖, g ~ N(0, I) (train/perturb.py)"
        for k in range(len(job.seeds)):
            info["children"][str(k)]["perturb_seed"] = perturb_seed(info["parent_seed"], k)
    atomic_write_text(sdir.info_file, json.dumps(info, indent=2) + "\n")
    return start


def _spawn_info(sdir: SpawnDir) -> dict:
    """spawn.json of an earlier spawn, checked (one line for a damaged one, with the remedy)."""
    try:
        return read_json(sdir.info_file, dict)
    except LinpathError as e:
        raise LinpathError(f"{e}; delete {sdir.root} to spawn again") from None


def _finished_rows(
    sdir: SpawnDir, children: int, setting: SweepSetting, noise: SpawnNoise
) -> list[dict] | None:
    """The rows of an earlier evaluation of the same setting, children and alignment, else None
    (also for rows damaged or edited since they were written: they are evaluated again)."""
    path = sdir.instability(setting.key)
    rows = _rows_of(path, "evaluated again") if path.is_file() else None
    pairs = [(a, b, al) for a, b in combinations(range(children), 2) for al in _alignments(noise)]
    if rows is None or [(d["child_a"], d["child_b"], d["aligned"]) for d in rows] != pairs:
        return None
    return rows


def _rows_of(path: Path, then: str) -> list[dict] | None:
    """The typed rows of a spawn's instability.csv; None, with a warning ending in `then`, for
    one that is damaged or was changed after it was written (its digest)."""
    try:
        data = path.read_bytes()
        problem = digest_problem(path, data)
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        if problem is None and (
            not rows or list(rows[0]) not in (INSTABILITY_COLUMNS, INSTABILITY_COLUMNS[:-2])
        ):
            problem = "its columns are not instability.csv's"
        typed = [_typed(d) for d in rows] if problem is None else None
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as e:
        problem, typed = f"unreadable ({type(e).__name__}: {e})", None
    if problem is not None:
        print(f"linpath: warning: {path}: {problem}; {then}", file=sys.stderr)
    return typed


def _typed(d: dict) -> dict:
    """A row with its numbers read (rows written before perturbations: SGD noise, not aligned)."""
    d = {"noise": "sgd", "aligned": "0", **d}
    ints, text = (
        ("replicate", "t", "child_a", "child_b", "points", "aligned"),
        ("setting", "split", "bn", "noise"),
    )
    return {k: int(v) if k in ints else v if k in text else float(v) for k, v in d.items()}


def _alignments(noise: SpawnNoise) -> list[int]:
    return [0, 1] if noise.align else [0]


def _evaluate_pairs(job: _Spawn, setting: SweepSetting) -> list[dict]:
    """Every pair of children's final states on a line job of the setting (the sweep's entry),
    and after weight matching where asked."""
    sdir, noise, r, t, final = job.sdir, job.options.noise, job.options.replicate, job.t, job.total
    line = setting_job(job.spec, setting, job.source, resolve_device(job.options.device))
    rows = []
    for a, b in combinations(range(job.options.children), 2):
        start = load_state_dict(sdir.checkpoint(a, final))
        end = load_state_dict(sdir.checkpoint(b, final))
        for aligned in (False, True) if noise.align else (False,):
            if aligned:
                end = align_states(start, end, line.engine.model)
            xs, results = line.curve(start, end, setting.grid)
            curve = PathCurve.of(
                xs, results, len(line.engine.labels), setting.bn, setting.precision, setting.split
            )
            path = sdir.pair_csv(setting.key, a, b, aligned)
            curve.to_csv(path, replicate=r, t=t)
            words = f"{noise.kind}{', aligned' if aligned else ''}"
            curve.plot(
                sdir.pair_png(setting.key, a, b, aligned),
                title=f"children {a} and {b} of replicate {r} spawned at T = {t} ({setting.key}; {words})",
            )
            rows.append(
                {**_row(curve, setting.key, r, t, a, b), "noise": noise.kind, "aligned": int(aligned)}
            )
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
    """A spawn's instability.csv, with its digest (so that a later call reuses only its own rows)."""
    write_item_bytes(path, csv_text(INSTABILITY_COLUMNS, rows).encode())


def write_summary(run: RunDir) -> Path | None:
    """RUN_DIR/spawn/instability.csv (every spawn's rows), instability_curve.csv and
    stability.csv (analysis/instability.py) and instability.png (the curve with its intervals)."""
    rows = []
    for path in [p for folder in run.spawn_dirs() for p in SpawnDir(folder).instability_tables()]:
        rows += _rows_of(path, f"left out of {run.instability_csv}") or []
    if not rows:
        return None
    rows.sort(
        key=lambda d: (
            d["setting"],
            d["noise"],
            d["aligned"],
            int(d["t"]),
            int(d["replicate"]),
            int(d["child_a"]),
            int(d["child_b"]),
        )
    )
    write_csv(run.instability_csv, INSTABILITY_COLUMNS, rows)
    curve = instability_curve(rows)
    write_csv(run.instability_curve_csv, CURVE_COLUMNS, curve)
    write_csv(run.stability_csv, STABILITY_COLUMNS, stability_rows(rows))
    _figure(curve, run.instability_png)
    return run.instability_csv


def _figure(curve: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot(1, 1, 1)
    groups = sorted({(d["setting"], d["noise"], d["aligned"]) for d in curve})
    for i, group in enumerate(groups):
        points = [d for d in curve if (d["setting"], d["noise"], d["aligned"]) == group]
        ts = np.array([max(d["t"], 0.5) for d in points], float)  # t = 0 at the left edge
        mean = np.array([d["mean"] for d in points])
        lo, hi = (np.array([d[k] for d in points]) for k in ("ci_low", "ci_high"))
        err = np.nan_to_num(np.stack([mean - lo, hi - mean]))
        label = f"{group[0]} {group[1]}{' aligned' if int(group[2]) else ''}"
        ax.errorbar(ts, mean, yerr=err, marker="o", capsize=3, color=f"C{i}", label=label)
    ax.set_xscale("log")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axhline(DELTA_STABILITY, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xlabel("spawn step T (log scale; T = 0 at the left edge)")
    ax.set_ylabel("error barrier between children")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("instability: max error along the path minus the endpoints' mean (mean, 95 % interval)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
