"""The MNIST job (`make mnist`) against its fp32 floor on this machine, and linpath's training loops
against a plain tensor loop, measured in the same run.

    python benchmarks/mnist_floor.py [--data-root ../shared/data] [--steps 469] [--rounds 2]
                                     [--baseline-src DIR] [--threads N]

floor:     the job's fp32 FLOPs (3 replicates x 18,760 steps x 3 x the forward's FLOPs at batch 128;
           the sweep after stem mixing: per point the layers after the stem on 10,000 images, per
           path the stem on both ends), counted from the model, over the fp32 matmul peak measured here.
plain:     a hand-written loop: one LeNet, torch.optim.SGD, batches gathered from a normalized
           tensor; no checkpoints, no log, no evaluation. One replicate at a time.
alone:     linpath's per-replicate loop (train_replicate), writing what it writes in a run.
together:  linpath's batched loop (train/together.py): the replicates in one step.
baseline:  with --baseline-src DIR (a `src` folder of another linpath version, e.g. a
           `git worktree` of an earlier commit), that version's per-replicate loop, in a subprocess.
Each loop trains `--replicates` replicates for `--steps` steps (default one epoch: its first
kept-step checkpoints, one epoch-end evaluation); the variants alternate for `--rounds` rounds
and the best round counts. Time per step is for all replicates. The sweep is projected from one
path of 100 points on 10,000 images, timed with the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from linpath.config.presets import preset
from linpath.config.schedule import Schedule
from linpath.config.spec import write_spec
from linpath.config.steps import kept_steps
from linpath.data.memory import InMemorySource
from linpath.data.source import EvalSet, Split
from linpath.engine.evaluator import PathEvaluator
from linpath.io.rundir import RunDir
from linpath.models import build
from linpath.train.loop import train_replicate
from sweep_throughput import best_of, count_macs, peak_gflops

MODEL = "mnist_lenet_300_100"
POINTS, EXAMPLES = 100, 10000


def source_of(data_root: str | None) -> InMemorySource:
    """Real MNIST under data_root, else random images of its shape (the timing does not depend on them)."""
    if data_root:
        from linpath.data import load

        return load("mnist", data_root)
    g = torch.Generator().manual_seed(0)

    def split(n):
        return Split(
            torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(n) % 10
        )

    return InMemorySource("random", split(60000), split(10000), (0.1307,), (0.3081,), 10)


def spec_of(steps: int, replicates: int):
    return preset(MODEL).with_overrides({"training_steps": f"{steps}it", "replicates": replicates})


def time_linpath(source, steps: int, replicates: int, batched: bool | None) -> float:
    """Seconds for linpath to train the replicates in a fresh run folder (batched None: the
    per-replicate loop of whatever linpath is imported, with no batched path at all)."""
    spec = spec_of(steps, replicates)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / spec.run_name)
        write_spec(run, spec)
        start = time.perf_counter()
        if batched is None:
            for r in range(replicates):
                train_replicate(spec, run, r, source, progress=False)
        else:
            from linpath.train.together import train_replicates

            train_replicates(spec, run, range(replicates), source, progress=False, batched=batched)
        return time.perf_counter() - start


def time_plain(source, steps: int, replicates: int) -> float:
    """Seconds for the plain loop to train the replicates one after the other."""
    inputs = source.normalize(source.train.images)
    labels, n = source.train.labels, len(source.train)
    start = time.perf_counter()
    for r in range(replicates):
        model = build(MODEL, 10, seed=r)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(r))
        for step in range(steps):
            i = order[(step * 128) % n : (step * 128) % n + 128]
            loss = F.cross_entropy(model(inputs[i]), labels[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def time_baseline(src: str, data_root: str | None, steps: int, replicates: int, threads: int) -> float:
    """The per-replicate loop of the linpath under `src`, in a subprocess (its own imports)."""
    cmd = [
        sys.executable,
        __file__,
        "--_baseline-child",
        "--steps",
        str(steps),
        "--replicates",
        str(replicates),
    ]
    cmd += ["--threads", str(threads)] + (["--data-root", data_root] if data_root else [])
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["seconds"])


def floor_flops(replicates: int) -> dict:
    """The job's FLOPs, counted from the model: training and the sweep after stem mixing."""
    example = torch.zeros(1, 1, 28, 28)
    forward = 2 * count_macs(MODEL, example)  # per example
    model = build(MODEL, 10)
    stem = model.get_submodule(model.linear_stem)
    stem_flops = 2 * stem.in_features * stem.out_features
    schedule = Schedule.of(preset(MODEL), 60000)
    paths = replicates * (len(kept_steps(schedule.total)) - 1)
    train = replicates * schedule.total * 3 * forward * 128
    per_point = (forward - stem_flops + 3 * stem.out_features) * EXAMPLES  # the tail and the stem mixing
    sweep = paths * (POINTS * per_point + 2 * stem_flops * EXAMPLES)
    return {"train": train, "sweep": sweep, "steps": schedule.total, "paths": paths}


def time_path() -> float:
    """Seconds for the engine to evaluate one path (100 points, 10,000 images)."""
    g = torch.Generator().manual_seed(0)
    evalset = EvalSet(
        torch.randn(EXAMPLES, 1, 28, 28, generator=g), torch.randint(0, 10, (EXAMPLES,), generator=g)
    )
    a, b = build(MODEL, 10, seed=1).state_dict(), build(MODEL, 10, seed=2).state_dict()
    engine = PathEvaluator(build(MODEL, 10), evalset, precision="fp32")
    xs = [i / (POINTS - 1) for i in range(POINTS)]
    return best_of(lambda: engine.evaluate_path(a, b, xs), 2)


def time_startup() -> float:
    """Seconds for `linpath presets` in a fresh interpreter (the start-up every command pays)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "linpath", "presets"], check=True, capture_output=True)
    return time.perf_counter() - start


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="folder holding mnist/ (default: random images)")
    p.add_argument("--steps", type=int, default=469, help="training steps timed per loop (default one epoch)")
    p.add_argument("--replicates", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best counts (default 2)")
    p.add_argument(
        "--baseline-src", default=None, help="another linpath's src/ folder: its per-replicate loop"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--peak-size", type=int, default=2048, help="matmul size of the peak measurement")
    p.add_argument("--_baseline-child", dest="child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args()


def measure_training(args, source) -> dict:
    """Best seconds per variant over alternating rounds."""
    variants = {
        "plain": lambda: time_plain(source, args.steps, args.replicates),
        "alone": lambda: time_linpath(source, args.steps, args.replicates, batched=False),
        "together": lambda: time_linpath(source, args.steps, args.replicates, batched=True),
    }
    if args.baseline_src:
        src = str(Path(args.baseline_src).resolve())
        threads = torch.get_num_threads()
        variants["baseline"] = lambda: time_baseline(
            src, args.data_root, args.steps, args.replicates, threads
        )
    best: dict[str, float] = {}
    for i in range(args.rounds):
        for name, run in variants.items():
            seconds = run()
            best[name] = min(best.get(name, seconds), seconds)
            print(f"round {i + 1}: {name:9s} {seconds / args.steps * 1e3:7.2f} ms/step", flush=True)
    return best


def report(args, best: dict, flops: dict, peak: float, path_s: float, startup_s: float) -> None:
    ms = {k: v / args.steps * 1e3 for k, v in best.items()}
    print(f"\nper step of {args.replicates} replicates (best of {args.rounds}):")
    for name, value in ms.items():
        print(f"  {name:9s} {value:7.2f} ms   {value / ms['together']:5.2f}x together's time")
    if "baseline" in ms:
        print(f"  together is {ms['baseline'] / ms['together']:.2f}x faster than the baseline's loop")
    floor_train, floor_sweep = flops["train"] / peak / 1e9, flops["sweep"] / peak / 1e9
    train_s = ms["together"] / 1e3 * flops["steps"]
    sweep_s = path_s * flops["paths"]
    job = train_s + sweep_s + startup_s
    print(
        f"\nfp32 floor: training {flops['train'] / 1e12:.2f} TFLOP -> {floor_train:.0f} s, "
        f"sweep {flops['sweep'] / 1e12:.2f} TFLOP -> {floor_sweep:.0f} s, at {peak:.0f} GFLOP/s"
    )
    print(
        f"projected job: training {train_s:.0f} s ({train_s / floor_train:.2f}x its floor), sweep "
        f"{sweep_s:.0f} s ({sweep_s / floor_sweep:.2f}x; {path_s:.2f} s per path x {flops['paths']}), "
        f"start-up {startup_s:.1f} s: {job:.0f} s, {job / (floor_train + floor_sweep):.2f}x the floor"
    )


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    source = source_of(args.data_root)
    if args.child:
        print(json.dumps({"seconds": time_linpath(source, args.steps, args.replicates, batched=None)}))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {source.name} data")
    peak = peak_gflops(3, ("fp32",), size=args.peak_size)["fp32"]
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s", flush=True)
    flops = floor_flops(args.replicates)
    best = measure_training(args, source)
    report(args, best, flops, peak, time_path(), time_startup())


if __name__ == "__main__":
    main()
