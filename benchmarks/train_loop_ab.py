"""The device loop's CPU stand-in against the per-replicate loop: seconds per step, alternating in one run.

    python benchmarks/train_loop_ab.py [--data-root DIR] [--rounds 3] [--steps 24] [--batch 128]

Both loops train replicate 0 of the cifar_resnet_20 preset through train_replicate (augmentation
on, the preset's batch) into a fresh run folder each round: the per-replicate loop
(LINPATH_DEVICE_LOOP=0, the CPU's default) and the device loop (=1: epoch plans drawn ahead, static
buffers, the loss summed in place; no graphs on the CPU). Each step is timed between callbacks,
from step --skip on (the first steps build oneDNN primitives), the same steps in both loops (so
the same checkpoint saves). Rounds alternate the order; printed: each round's median seconds per
step, and the ratio device loop / per-replicate loop per round and overall (below 1: faster).
Real CIFAR-10 under --data-root when it is there, else random images of its shape.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from linpath.config.presets import preset
from linpath.config.spec import write_spec
from linpath.io.rundir import RunDir
from linpath.train.loop import train_replicate
from train_throughput import cifar_source  # noqa: E402  (benchmarks/ is the script's folder)


def seconds_per_step(spec, source, loop: str, skip: int) -> list[float]:
    os.environ["LINPATH_DEVICE_LOOP"] = loop
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        run = RunDir(Path(folder) / spec.run_name)
        write_spec(run, spec)
        train_replicate(
            spec, run, 0, source, progress=False, callbacks=(lambda rep: stamps.append(time.perf_counter()),)
        )
    return [b - a for a, b in zip(stamps[skip:], stamps[skip + 1 :])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=24, help="timed steps per loop and round")
    p.add_argument("--skip", type=int, default=4, help="untimed first steps")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    source = cifar_source(args.data_root)
    total = args.skip + args.steps + 1
    spec = preset("cifar_resnet_20").with_overrides(
        {"training_steps": f"{total}it", "replicates": 1, "batch_size": args.batch}
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, ResNet-20 batch {args.batch}, {args.steps} steps timed"
    )
    ratios = []
    for r in range(args.rounds):
        order = ["0", "1"] if r % 2 == 0 else ["1", "0"]
        median = {loop: statistics.median(seconds_per_step(spec, source, loop, args.skip)) for loop in order}
        ratios.append(median["1"] / median["0"])
        print(
            f"round {r}: per-replicate loop {1000 * median['0']:7.1f} ms/step   device loop (CPU stand-in) "
            f"{1000 * median['1']:7.1f} ms/step   ratio {ratios[-1]:.3f}",
            flush=True,
        )
    print(
        f"median ratio device loop / per-replicate loop: {statistics.median(ratios):.3f} over {args.rounds} rounds"
    )


if __name__ == "__main__":
    main()
