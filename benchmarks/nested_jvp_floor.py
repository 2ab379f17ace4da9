"""Why the directional curvature costs about 10 forward passes on LeNet: torch's nested jvp.

    python benchmarks/nested_jvp_floor.py

L''(x) = uᵀHu is computed by forward mode twice (torch.func.jvp of a jvp, engine/curvature.py).
For one Linear layer y = x·Wᵀ + b moved along (U, V), a second-order Taylor pass needs the
products x·Wᵀ and x·Uᵀ only (y is linear in the weights: y'' = 0). This prints, for LeNet's
first layer (784 → 300 on 2,000 inputs, its most expensive product), the matrix products torch
runs and the time of: the plain forward, one jvp, and the nested jvp, best of 5 each, in the same
run. The ratio nested / forward is the floor of the curvature's cost under torch.func on this
layer; what is above it on the whole model is the same per layer.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.func import jvp

PRODUCTS = ("aten::mm", "aten::addmm", "aten::matmul", "aten::bmm")


def products(fn) -> int:
    """How many matrix-product calls `fn` makes (torch.profiler)."""
    with torch.profiler.profile() as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key in PRODUCTS)


def best(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 784, generator=g)
    w, b = torch.randn(300, 784, generator=g) * 0.03, torch.randn(300, generator=g)
    u, v = torch.randn(300, 784, generator=g) * 0.03, torch.randn(300, generator=g)

    def loss(w, b):
        return F.linear(x, w, b).relu().square().sum()

    def slope(w, b):
        return jvp(loss, (w, b), (u, v))[1]

    ways = {
        "forward": lambda: loss(w, b),
        "jvp (L, L')": lambda: jvp(loss, (w, b), (u, v)),
        "nested jvp (L, L', L'')": lambda: jvp(slope, (w, b), (u, v)),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; Linear 784 -> 300 on 2000 inputs")
    base = None
    for name, fn in ways.items():
        seconds = best(fn)
        base = base or seconds
        print(
            f"  {name:26s} {seconds * 1e3:7.1f} ms  {seconds / base:5.2f} forwards  {products(fn):2d} products"
        )
    print("  a second-order Taylor pass needs 2 products here (x·Wᵀ and x·Uᵀ)")


if __name__ == "__main__":
    main()
