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

On a GPU (--device cuda) the data and both loops live on the GPU (the plain loop's DataLoader
yields CPU batches that it moves to the device, as OpenLTH does), every timing synchronizes
before and after, and the plain loop runs in IEEE fp32 like the engine's fp32 (TF32 off; see
linpath.runtime.device.exact_fp32), so that the ratio compares the loops, not the arithmetic.
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
from linpath.runtime.device import exact_fp32, resolve_device

SHAPES = {"mnist_lenet_300_100": (1, 28, 28), "cifar_resnet_20": (3, 32, 32), "cifar_vgg_16": (3, 32, 32)}
# (examples timed, points per path) for the default run; the paper's sets have 10,000 test images
DEFAULTS = {"mnist_lenet_300_100": (10000, 100), "cifar_resnet_20": (1000, 2), "cifar_vgg_16": (500, 1)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, repeats: int, device: torch.device = torch.device("cpu")) -> float:
    fn()  # warm-up (oneDNN primitive creation / cuDNN algorithm choice, allocator)
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return min(times)


@torch.no_grad()
def peak_gflops(repeats: int, precisions=("fp32", "bf16"), device=torch.device("cpu"), size: int = 4096):
    """Achievable GFLOP/s per precision: the better of a size² matmul and a 3x3 convolution
    (128 images, 64 -> 64 channels, 32x32, channels-last); fp32 is IEEE fp32 (no TF32)."""
    out = {}
    a = torch.randn(size, size, device=device)
    img = torch.randn(128, 64, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3, device=device).contiguous(memory_format=torch.channels_last)
    conv_flops = 2 * 128 * 64 * 32 * 32 * 64 * 9
    for precision in precisions:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        with exact_fp32(device, precision):
            m = a.to(dtype)
            mm = 2 * size**3 / best_of(lambda: m @ m, repeats, device) / 1e9
            x, k = img.to(dtype), w.to(dtype)
            conv = conv_flops / best_of(lambda: F.conv2d(x, k, padding=1), repeats, device) / 1e9
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
def baseline(
    name: str, start: dict, end: dict, inputs, labels, xs, device=torch.device("cpu")
) -> list[float]:
    model = MODELS[name](10).to(device)
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=128)
    losses = []
    for x in xs:
        model.load_state_dict(
            {k: torch.lerp(start[k], end[k], x) if start[k].is_floating_point() else end[k] for k in start}
        )
        model.eval()
        total = 0.0
        with exact_fp32(device, "fp32"):
            for xb, yb in loader:
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                total += F.cross_entropy(model(xb), yb, reduction="sum").item()
        losses.append(total / len(labels))
    return losses


def run_model(
    name: str,
    examples: int,
    points: int,
    repeats: int,
    peak: dict,
    compile: bool = False,
    device: torch.device = torch.device("cpu"),
) -> dict:
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(examples, *SHAPES[name], generator=g)
    labels = torch.randint(0, 10, (examples,), generator=g)
    start, end = endpoint(name, 1), endpoint(name, 2)
    xs = [i / max(1, points - 1) if points > 1 else 0.5 for i in range(points)]
    flops = 2 * count_macs(name, inputs[:1]) * examples  # per network
    scale = 10000 / examples
    row = {"model": name, "examples": examples, "points": points}
    ref = []
    t = best_of(
        lambda: ref.__setitem__(slice(None), baseline(name, start, end, inputs, labels, xs, device)),
        repeats,
        device,
    )
    row["baseline_ms"] = t / points * 1e3 * scale
    evalset = EvalSet(inputs.to(device), labels.to(device))
    for precision in peak:
        engine = PathEvaluator(build(name, 10), evalset, precision=precision, compile=compile)
        res = []
        t = best_of(
            lambda: res.__setitem__(slice(None), engine.evaluate_path(start, end, xs)), repeats, device
        )
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
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument(
        "--precisions",
        default="fp32,bf16",
        help="engine precisions to time (default fp32,bf16; bf16 is slow on CPUs without AVX512-BF16)",
    )
    p.add_argument(
        "--peak-size", type=int, default=4096, help="side of the square matmul that measures the peak"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="the engine with torch.compile (compilation is in the warm-up, not timed)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precisions = [q for q in args.precisions.split(",") if q]
    if not precisions or any(q not in ("fp32", "bf16") for q in precisions):
        p.error(f"--precisions: expected fp32 and/or bf16, got {args.precisions!r}")
    where = (
        f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
        if device.type == "cuda"
        else f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"
    )
    print(f"torch {torch.__version__}, device {device}: {where}")
    peak = peak_gflops(args.repeats, precisions, device, args.peak_size)
    print("peak (best of matmul / conv): " + ", ".join(f"{q} {v:.0f} GFLOP/s" for q, v in peak.items()))
    header = (
        f"{'model':22s} {'n':>6s} {'pts':>3s} {'plain ms':>9s} "
        + "".join(
            f"{q + ' ms':>8s} {'x':>5s} {q + ' GF/s':>9s} {'%peak':>6s} {'dloss ' + q:>10s} "
            for q in precisions
        )
        + "stem"
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
            name, args.examples or examples, args.points or points, args.repeats, peak, args.compile, device
        )
        print(
            f"{name:22s} {r['examples']:6d} {r['points']:3d} {r['baseline_ms']:9.1f} "
            + "".join(
                f"{r[q + '_ms']:8.1f} {r[q + '_speedup']:5.2f} {r[q + '_gflops']:9.1f} "
                f"{100 * r[q + '_peak_share']:5.0f}% {r[q + '_max_loss_diff']:10.1e} "
                for q in precisions
            )
            + f"{r[precisions[0] + '_stem']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
