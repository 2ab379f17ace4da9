"""Plane throughput: time per point of a plane, the engine (linpath.plane) vs a plain loop.

    python benchmarks/plane_throughput.py          # LeNet 21x21 on 10,000 examples, ResNet-20 11x11 on 2,000

The issue's two planes, each between three states (random inits with their BatchNorm
statistics randomized, as sweep_throughput.py's endpoints), on random data of the model's input
shape (timing does not depend on what the images show; --data-root DIR uses MNIST's and
CIFAR-10's test images instead):
  (a) plain loop: for each (α, β), build θ_o + α(θ_a - θ_o) + β(θ_b - θ_o) by hand,
      load_state_dict it, evaluate with a DataLoader at batch 128 in fp32. It is timed on
      --plain-points random grid points inside the three states' triangle (the whole grid would
      take minutes to hours on a CPU) and compared per point;
  (b) the engine: linpath.plane on the whole grid (LeNet's stem mixed from the three anchors'
      outputs, convnet BatchNorm folded), fp32.
  (c) the engine on a line: linpath.path from the first state to the second at as many points
      as the plane has (so that set-up is spread alike), on the same model, data and machine, so that the bar "the plane as far ahead of the plain
      loop as the line" is measured against the same plain loop in the same run.
The plain loop is warmed up once (untimed) before its points are timed.
Printed: ms per point of each, the ratios plain/plane and plain/line, and the largest loss
difference on the points both the plain loop and the plane evaluated.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import linpath
from linpath.models import build
from sweep_throughput import SHAPES, baseline, endpoint

# (grid side, examples) of the planes
PLANES = {"mnist_lenet_300_100": (21, 10000), "cifar_resnet_20": (11, 2000)}
DATASETS = {"mnist_lenet_300_100": "mnist", "cifar_resnet_20": "cifar10"}


def test_images(name: str, examples: int, data_root: str | None):
    """(inputs, labels): the data set's first test images when data_root is given, else random."""
    if data_root:
        from linpath import data

        evalset = data.load(DATASETS[name], data_root).eval_set("test", "cpu")
        return evalset.inputs[:examples], evalset.labels[:examples]
    g = torch.Generator().manual_seed(0)
    return torch.randn(examples, *SHAPES[name], generator=g), torch.randint(0, 10, (examples,), generator=g)


def plain_point(name, states, inputs, labels, alpha: float, beta: float) -> float:
    """The plain loop's loss at (α, β): the mixed state built by hand (baseline() at x = 1 of a
    'path' whose end is that state)."""
    o, a, b = states
    mixed = {
        k: o[k] + alpha * (a[k] - o[k]) + beta * (b[k] - o[k]) if o[k].is_floating_point() else o[k]
        for k in o
    }
    return baseline(name, mixed, mixed, inputs, labels, [1.0])[0]


def best_ms(fn, repeats: int, points: int) -> tuple[float, object]:
    """(the best of `repeats` wall times per point in ms, the last value)."""
    best, value = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        best = min(best, (time.perf_counter() - t) / points * 1e3)
    return best, value


def run_plane(
    name: str, side: int, examples: int, plain_points: int, data_root: str | None, repeats: int = 1
) -> dict:
    inputs, labels = test_images(name, examples, data_root)
    states = [endpoint(name, seed) for seed in (1, 2, 3)]
    linpath.plane(build(name, 10), *states, (inputs[:256], labels[:256]), grid=2)  # warm-up, untimed
    engine_ms, surface = best_ms(
        lambda: linpath.plane(build(name, 10), *states, (inputs, labels), grid=side, span=(-0.5, 1.5)),
        repeats,
        side**2,
    )
    line_ms, _ = best_ms(
        lambda: linpath.path(build(name, 10), states[0], states[1], (inputs, labels), grid=side * side),
        repeats,
        side**2,
    )
    # the plain loop's points: random grid points inside the triangle of the three states, where
    # mixed BatchNorm variances stay positive (outside it a NaN point would time differently)
    inside = [
        (i, j)
        for i, b in enumerate(surface.beta)
        for j, a in enumerate(surface.alpha)
        if a >= 0 and b >= 0 and a + b <= 1
    ]
    rng = np.random.default_rng(0)
    picks = [inside[k] for k in rng.choice(len(inside), size=min(plain_points, len(inside)), replace=False)]
    plain_point(name, states, inputs, labels, 0.5, 0.25)  # warm-up: oneDNN primitives, allocator
    t = time.perf_counter()
    plain = [plain_point(name, states, inputs, labels, surface.alpha[j], surface.beta[i]) for i, j in picks]
    plain_ms = (time.perf_counter() - t) / len(picks) * 1e3
    diffs = [abs(p - surface.loss[i, j]) for p, (i, j) in zip(plain, picks) if np.isfinite(p)]
    return {
        "model": name,
        "grid": f"{side}x{side}",
        "examples": examples,
        "plain_ms": plain_ms,
        "engine_ms": engine_ms,
        "speedup": plain_ms / engine_ms,
        "line_ms": line_ms,
        "line_speedup": plain_ms / line_ms,
        "max_loss_diff": max(diffs) if diffs else float("nan"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(PLANES), help="comma-separated: " + ", ".join(PLANES))
    p.add_argument(
        "--side", type=int, default=None, help="grid side (default 21 for LeNet, 11 for ResNet-20)"
    )
    p.add_argument("--examples", type=int, default=None, help="examples (default 10,000 / 2,000)")
    p.add_argument("--plain-points", type=int, default=5, help="grid points the plain loop evaluates")
    p.add_argument("--data-root", default=None, help="use MNIST's / CIFAR-10's test images from here")
    p.add_argument(
        "--repeats", type=int, default=1, help="timed runs of the plane and the line; the best is kept"
    )
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        "| model | grid | examples | plain ms/point | plane ms/point | plane × | line ms/point | line × "
        "| max Δloss |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in [m for m in args.models.split(",") if m]:
        if name not in PLANES:
            raise SystemExit(f"unknown model {name!r}: choose from {', '.join(PLANES)}")
        side, examples = PLANES[name]
        row = run_plane(
            name,
            args.side or side,
            args.examples or examples,
            args.plain_points,
            args.data_root,
            args.repeats,
        )
        print(
            f"| {row['model']} | {row['grid']} | {row['examples']} | {row['plain_ms']:.1f} | "
            f"{row['engine_ms']:.1f} | {row['speedup']:.2f} | {row['line_ms']:.1f} | {row['line_speedup']:.2f} | "
            f"{row['max_loss_diff']:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
