"""The sweep: for each (replicate, t), evaluate the path from the state at t to the final one.

Work items are independent; each finished item is written atomically to its own file under
sweep/<setting>/, so a killed sweep resumes by skipping finished files, several processes (or
torchrun ranks) can share the work without coordination, and paths.csv is rebuilt from the
item files in a fixed order (so it is identical however the work was split).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from .distributed import World
from .errors import LinpathError
from .evaluate import BN_POLICIES, PathEvaluator, class_counts, stratified_subset
from .grids import Grid
from .store import RunDir, atomic_write_text, csv_text, load_state_dict
from .train import Schedule, build_model, resolve_device

MERGE_EVERY_S = 30.0  # how often a single-process sweep refreshes paths.csv from the finished items
PATH_COLUMNS = ["replicate", "t", "x", "split", "bn", "examples", "precision", "loss", "error", "loss_se", "error_se"]
DEFAULT_BN_BATCHES = 16  # recompute: 16 training batches (2,048 examples at batch 128), see docs/engine.md


@dataclass(frozen=True)
class SweepSetting:
    """What decides the numbers of a sweep, besides the checkpoints."""

    split: str = "test"
    bn: str = "interpolate"
    grid: Grid = field(default_factory=Grid)
    precision: str = "fp32"
    bn_batches: int = DEFAULT_BN_BATCHES  # recompute only: training batches per point
    eval_examples: int = 0  # a class-stratified subset of the split; 0: all of it

    def __post_init__(self):
        if self.split not in ("test", "train"):
            raise LinpathError(f"unknown split {self.split!r} (known: test, train)")
        if self.bn not in BN_POLICIES:
            raise LinpathError(f"unknown BatchNorm policy {self.bn!r} (known: {', '.join(BN_POLICIES)})")
        if self.precision not in ("fp32", "bf16"):
            raise LinpathError(f"unknown precision {self.precision!r} (known: fp32, bf16)")
        if isinstance(self.bn_batches, bool) or not isinstance(self.bn_batches, int) or self.bn_batches < 1:
            raise LinpathError(f"--bn-batches must be a positive integer, got {self.bn_batches}")
        if isinstance(self.eval_examples, bool) or not isinstance(self.eval_examples, int) or self.eval_examples < 0:
            raise LinpathError(f"--eval-examples must be a positive integer, got {self.eval_examples}")

    @property
    def key(self) -> str:
        """The sweep folder's name: everything that changes the numbers."""
        bn = f"recompute{self.bn_batches}" if self.bn == "recompute" else self.bn
        subset = f"-n{self.eval_examples}" if self.eval_examples else ""
        return f"{self.split}-{bn}-{self.grid.key}-{self.precision}{subset}"


def parse_steps(text: str | None) -> list[int] | None:
    if text is None or text == "":
        return None
    try:
        return sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise LinpathError(f"--from-steps takes iterations separated by commas (e.g. 0,16,1024), got {text!r}") from None


def work_items(run: RunDir, replicates: list[int], from_steps: list[int] | None, final: int) -> list[tuple[int, int]]:
    items = []
    for r in replicates:
        saved = run.saved_steps(r)
        if final not in saved:
            raise LinpathError(f"replicate {r} has no final checkpoint ({run.checkpoint(r, final)}); train it first")
        wanted = [t for t in saved if t < final] if from_steps is None else from_steps
        for t in wanted:
            if t not in saved:
                raise LinpathError(f"replicate {r} has no checkpoint at t={t} (kept: {', '.join(map(str, saved))})")
            if t < final:
                items.append((r, t))
    return items


def item_path(run: RunDir, setting: SweepSetting, r: int, t: int):
    return run.sweep_dir / setting.key / f"r{r}-t{t:07d}.csv"


def format_rows(rows: list[list]) -> str:
    return csv_text(PATH_COLUMNS, rows)


def run_sweep(run: RunDir, setting: SweepSetting, source, device: str = "cpu", from_steps: list[int] | None = None,
              replicates: list[int] | None = None, progress: bool = True, world: World = World(),
              batch_size: int | None = None, compile: bool = False) -> int:
    """Evaluate every unfinished item (this rank's share); returns the number evaluated.

    Under torchrun rank 0 lists the unfinished items and every rank takes every size-th one
    of that list, so ranks agree on the split even while files appear; items cost the same
    (same grid, same data), so round-robin balances them."""
    spec = run.read_spec()
    schedule = Schedule.of(spec, source.num_train_examples)
    replicates = run.replicates() if replicates is None else replicates
    if not replicates:
        raise LinpathError(f"{run.root} has no finished replicate to sweep; run 'linpath train' first")
    items = work_items(run, replicates, from_steps, schedule.total)
    todo = world.broadcast([it for it in items if not item_path(run, setting, *it).exists()])[world.rank::world.size]
    if not todo:
        return 0
    dev = resolve_device(device)
    evalset = source.eval_set(setting.split, dev)
    population = None
    if setting.eval_examples and setting.eval_examples < len(evalset):
        population = class_counts(evalset.labels)
        evalset = evalset.subset(stratified_subset(evalset.labels, setting.eval_examples).to(dev))
    bn_batches = None
    if setting.bn == "recompute":
        # the same training batches (no augmentation) at every x, t and replicate
        stream = source.train_batches(spec.train.seed, spec.data.batch_size, device=dev, augment=False)
        bn_batches = [next(stream)[0] for _ in range(setting.bn_batches)]
    model = build_model(spec, source.num_classes, seed=0)
    engine = PathEvaluator(model, evalset, batch_size=batch_size, precision=setting.precision, population=population,
                            compile=compile)
    xs = setting.grid.xs()
    last_merge = time.monotonic()
    bar = tqdm(total=len(todo) * len(xs), desc=f"sweep (rank {world.rank})" if world.active else "sweep", unit="net",
               disable=not progress, dynamic_ncols=True)
    finals: dict[int, dict] = {}
    for r, t in todo:
        if r not in finals:
            finals = {r: load_state_dict(run.checkpoint(r, schedule.total))}
        start = load_state_dict(run.checkpoint(r, t))
        try:
            path = engine.path(start, finals[r], bn=setting.bn, bn_batches=bn_batches)
        except LinpathError as e:
            raise LinpathError(f"{run.checkpoint(r, t)} and {run.checkpoint(r, schedule.total)}: {e}") from None
        item_xs, results = setting.grid.run(path.evaluate)
        rows = [[r, t, repr(x), setting.split, setting.bn, res.examples, setting.precision, repr(res.loss), repr(res.error),
                 repr(res.loss_se), repr(res.error_se)] for x, res in zip(item_xs, results)]
        atomic_write_text(item_path(run, setting, r, t), format_rows(rows))
        bar.update(len(xs))
        if not world.active and time.monotonic() - last_merge > MERGE_EVERY_S:
            merge_paths(run)  # keep paths.csv current during long sweeps (ranks: rank 0 merges at the end)
            last_merge = time.monotonic()
    bar.close()
    return len(todo)


def read_csv_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def merge_paths(run: RunDir) -> int:
    """Rebuild paths.csv from every finished item file; returns the number of rows."""
    rows = []
    seen = set()
    for path in sorted(run.sweep_dir.glob("*/r*-t*.csv")):
        for d in read_csv_rows(path):
            key = tuple(d[c] for c in PATH_COLUMNS[:7])
            if key not in seen:
                seen.add(key)
                rows.append([d.get(c) or "" for c in PATH_COLUMNS])  # files from before loss_se: blank
    rows.sort(key=lambda row: (row[3], row[4], row[6], int(row[5]), int(row[0]), int(row[1]), float(row[2])))
    atomic_write_text(run.paths_csv, format_rows(rows))
    return len(rows)
