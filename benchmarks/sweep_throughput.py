"""Sweep engine throughput: time per interpolated network, ours vs the plain loop.

    python benchmarks/sweep_throughput.py                 # LeNet, ResNet-20, VGG-16 (a few minutes)
    python benchmarks/sweep_throughput.py --models mnist_lenet_300_100 --examples 10000

For each model, on random data of the model's input shape (timing does not depend on what the
images show), between two random endpoints:
  (a) baseline: what an OpenLTH user would write: for each x, build the state dict, load it
      with load_state_dict, evaluate with a DataLoader at batch 128 in fp32;
  (b) the engine (linpath.engine.evaluator.PathEvaluator) in fp32 and in bf16.
Printed: ms per interpolated network (scaled to 10,000 examples when fewer are timed), the
ratios, achieved GFLOP/s (2 x multiply-adds of the convolutions and linear layers) and its
share of the machine's peak measured in the same run (a large matmul and convolution per
precision, the better of the two), and the largest loss difference between (a) and (b).
Timings are the minimum over --repeats runs, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from linpath.data.source import EvalSet
from linpath.engine.evaluator import PathEvaluator
from linpath.models import MODELS, build

SHAPES = {"mnist_lenet_300_100": (1, 28, 28), "cifar_resnet_20": (3, 32, 32), "cifar_vgg_16": (3, 32, 32)}
# (examples timed, points per path) for the default run; the paper's sets have 10,000 test images
DEFAULTS = {"mnist_lenet_300_100": (10000, 100), "cifar_resnet_20": (1000, 2), "cifar_vgg_16": (500, 1)}


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation, allocator)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


@torch.no_grad()
def peak_gflops(repeats: int) -> dict[str, float]:
    """Achievable GFLOP/s per precision: the better of a 4096² matmul and a 3x3 convolution
    (128 images, 64 -> 64 channels, 32x32, channels-last)."""
    out = {}
    a = torch.randn(4096, 4096)
    img = torch.randn(128, 64, 32, 32).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3).contiguous(memory_format=torch.channels_last)
    conv_flops = 2 * 128 * 64 * 32 * 32 * 64 * 9
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        m = a.to(dtype)
        mm = 2 * 4096**3 / best_of(lambda: m @ m, repeats) / 1e9
        x, k = img.to(dtype), w.to(dtype)
        conv = conv_flops / best_of(lambda: F.conv2d(x, k, padding=1), repeats) / 1e9
        out[precision] = max(mm, conv)
    return out


def endpoint(name: str, seed: int) -> dict:
    model = build(name, 10, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return {k: v.clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def baseline(name: str, start: dict, end: dict, inputs, labels, xs) -> list[float]:
    model = MODELS[name](10)
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=128)
    losses = []
    for x in xs:
        model.load_state_dict(
            {k: torch.lerp(start[k], end[k], x) if start[k].is_floating_point() else end[k] for k in start}
        )
        model.eval()
        total = 0.0
        for xb, yb in loader:
            total += F.cross_entropy(model(xb), yb, reduction="sum").item()
        losses.append(total / len(labels))
    return losses


def run_model(name: str, examples: int, points: int, repeats: int, peak: dict, compile: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(examples, *SHAPES[name], generator=g)
    labels = torch.randint(0, 10, (examples,), generator=g)
    start, end = endpoint(name, 1), endpoint(name, 2)
    xs = [i / max(1, points - 1) if points > 1 else 0.5 for i in range(points)]
    flops = 2 * count_macs(name, inputs[:1]) * examples  # per network
    scale = 10000 / examples
    row = {"model": name, "examples": examples, "points": points}
    ref = []
    t = best_of(lambda: ref.__setitem__(slice(None), baseline(name, start, end, inputs, labels, xs)), repeats)
    row["baseline_ms"] = t / points * 1e3 * scale
    for precision in ("fp32", "bf16"):
        engine = PathEvaluator(build(name, 10), EvalSet(inputs, labels), precision=precision, compile=compile)
        res = []
        t = best_of(lambda: res.__setitem__(slice(None), engine.evaluate_path(start, end, xs)), repeats)
        row[f"{precision}_ms"] = t / points * 1e3 * scale
        row[f"{precision}_speedup"] = row["baseline_ms"] / row[f"{precision}_ms"]
        row[f"{precision}_gflops"] = flops / (t / points) / 1e9
        row[f"{precision}_peak_share"] = row[f"{precision}_gflops"] / peak[precision]
        row[f"{precision}_max_loss_diff"] = max(abs(r.loss - b) for r, b in zip(res, ref))
        row[f"{precision}_stem"] = engine.uses_stem
    row["baseline_gflops"] = flops / (row["baseline_ms"] / scale / 1e3) / 1e9
    return row


@torch.no_grad()
def count_macs(name: str, example) -> int:
    total = [0]

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Linear):
            total[0] += output.numel() * module.in_features
        elif isinstance(module, torch.nn.modules.conv._ConvNd):
            total[0] += output.numel() * module.weight[0].numel()

    model = build(name, 10).eval()
    hooks = [m.register_forward_hook(count) for m in model.modules()]
    model(example)
    for h in hooks:
        h.remove()
    return total[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(SHAPES), help="comma-separated model names")
    p.add_argument(
        "--examples", type=int, default=None, help="examples timed (default per model: 10000 / 1000 / 500)"
    )
    p.add_argument(
        "--points", type=int, default=None, help="points per path (default per model: 100 / 2 / 1)"
    )
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--compile",
        action="store_true",
        help="the engine with torch.compile (compilation is in the warm-up, not timed)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"
    )
    peak = peak_gflops(args.repeats)
    print(f"peak (best of matmul / conv): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    header = (
        f"{'model':22s} {'n':>6s} {'pts':>3s} {'plain ms':>9s} {'fp32 ms':>8s} {'x':>5s} {'bf16 ms':>8s} {'x':>5s} "
        f"{'fp32 GF/s':>9s} {'%peak':>6s} {'bf16 GF/s':>9s} {'%peak':>6s} {'dloss fp32':>10s} {'dloss bf16':>10s} stem"
    )
    print(
        "ms per interpolated network on 10,000 examples (scaled when fewer are timed)"
        + ("; engine with torch.compile" if args.compile else "")
    )
    print(header)
    for name in [m for m in args.models.split(",") if m]:
        if name not in MODELS:
            print(f"{name:22s} not registered in linpath.models; skipped")
            continue
        examples, points = DEFAULTS.get(name, (1000, 2))
        r = run_model(
            name, args.examples or examples, args.points or points, args.repeats, peak, args.compile
        )
        print(
            f"{name:22s} {r['examples']:6d} {r['points']:3d} {r['baseline_ms']:9.1f} {r['fp32_ms']:8.1f} "
            f"{r['fp32_speedup']:5.2f} {r['bf16_ms']:8.1f} {r['bf16_speedup']:5.2f} {r['fp32_gflops']:9.1f} "
            f"{100 * r['fp32_peak_share']:5.0f}% {r['bf16_gflops']:9.1f} {100 * r['bf16_peak_share']:5.0f}% "
            f"{r['fp32_max_loss_diff']:10.1e} {r['bf16_max_loss_diff']:10.1e} {r['fp32_stem']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
