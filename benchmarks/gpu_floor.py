"""The floor of the paper's protocol on this device: how fast training and the sweep could be.

    python benchmarks/gpu_floor.py --device cuda --out floor.json        # on a GPU (about 30 s)
    python benchmarks/gpu_floor.py --device cpu --models cifar_resnet_20 --batch 8 \\
        --eval-examples 64 --peak-size 512 --out floor.json              # the dry run's stand-in

For each model:
  FLOPs    one forward of a 32x32 image counted by torch.utils.flop_counter.FlopCounterMode (2 per
           multiply-add, convolutions and matrix products); a training step is 3x the forward of
           its batch (forward, input and weight gradients), a swept network one forward of every
           evaluation example.
  peak     the device's best of a size^2 matmul: fp32 with TF32 off (linpath's fp32), and bf16.
  kernels  per training step (an eager forward, backward and SGD step of the preset's batch, after
           warm-up) and per swept network (one point of the sweep engine on the evaluation set,
           at its default batch): CUDA kernels and copies seen by torch.profiler; on the CPU, the
           top-level aten ops, as a stand-in.
  launch   the measured cost of one eager op (a 1-element add_, Python and dispatcher included),
           and on CUDA of one kernel node replayed from a CUDA graph.
  floor    compute = FLOPs / peak; launch = kernels x launch cost (eager, and graph-replayed for
           training); the floor is the larger, per step and per network, and for the protocol
           (62,560 steps, 74 x 100 networks). Measured stages are compared with these in
           timings.json (benchmarks/gpu_study.sh).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from linpath.data.source import EvalSet
from linpath.engine.evaluator import PathEvaluator
from linpath.models import build
from linpath.runtime.device import autocast, exact_fp32, resolve_device

STEPS = 62_560  # the paper's 160 epochs of 391 iterations
NETWORKS = 74 * 100  # every kept t of 62,560 iterations x 100 points


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn, device: torch.device, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


@torch.no_grad()
def peak_flops(device: torch.device, size: int, repeats: int) -> dict[str, float]:
    """FLOP/s of a size^2 matmul: fp32 (TF32 off) and bf16."""
    out = {}
    a = torch.randn(size, size, device=device)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        m = a.to(dtype)
        with exact_fp32(device, precision):
            seconds = best_seconds(lambda m=m: m @ m, device, repeats)
        out[precision] = 2 * size**3 / seconds
    return out


def forward_flops_per_image(name: str, shape: tuple[int, ...]) -> int:
    model = build(name, 10, seed=0).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(2, *shape))
    return counter.get_total_flops() // 2


def counted_step_flops(name: str, batch: int, shape: tuple[int, ...]) -> int:
    """Forward and backward of a training step as FlopCounterMode counts them (for reference)."""
    model = build(name, 10, seed=0).train()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(torch.zeros(batch, *shape)), torch.zeros(batch, dtype=torch.long)).backward()
    return counter.get_total_flops()


def count_kernels(fn, device: torch.device) -> int:
    """CUDA kernels, copies and sets of one call of fn (CUDA); top-level aten ops (CPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    events = prof.events()
    if device.type == "cuda":
        return sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    return sum(
        1
        for e in events
        if e.name.startswith("aten::")
        and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    )


def training_step(name: str, batch: int, shape, device: torch.device):
    """linpath's eager step (channels-last, fp32, SGD with momentum and weight decay) as a closure."""
    model = build(name, 10, seed=0).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, *shape, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        with autocast(device, "fp32"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        with exact_fp32(device, "fp32"):
            loss.backward()
        opt.step()

    for _ in range(2):
        step()
    return step


def sweep_point(name: str, examples: int, shape, device: torch.device):
    """One point of the sweep engine (bf16, BatchNorm folded) on `examples` images, as a closure."""
    evalset = EvalSet(
        torch.randn(examples, *shape, device=device), torch.randint(0, 10, (examples,), device=device)
    )
    engine = PathEvaluator(build(name, 10, seed=0), evalset, precision="bf16")
    start, end = build(name, 10, seed=1).state_dict(), build(name, 10, seed=2).state_dict()
    path = engine.path(start, end)
    path.evaluate([0.5])
    return (lambda: path.evaluate([0.5])), engine.batch_size


def launch_costs(device: torch.device, n: int = 2000) -> dict[str, float | None]:
    """Seconds per eager op (a 1-element add_), and per kernel replayed from a CUDA graph."""
    t = torch.zeros(1, device=device)

    def eager():
        for _ in range(n):
            t.add_(1)

    out = {"eager_op_s": best_seconds(eager, device, 3) / n, "graph_kernel_s": None}
    if device.type == "cuda":
        graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            eager()
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.cuda.graph(graph):
            for _ in range(n):
                t.add_(1)
        out["graph_kernel_s"] = best_seconds(graph.replay, device, 3) / n
    return out


def model_floor(name: str, args, device: torch.device, peak: dict, launch: dict) -> dict:
    shape = (3, 32, 32)
    per_image = forward_flops_per_image(name, shape)
    step_flops = 3 * per_image * args.batch
    step_kernels = count_kernels(training_step(name, args.batch, shape, device), device)
    point, eval_batch = sweep_point(name, args.eval_examples, shape, device)
    net_kernels = count_kernels(point, device)
    net_flops = per_image * args.eval_examples
    graph_s = launch["graph_kernel_s"]
    step = {
        "compute_s": step_flops / peak["fp32"],
        "launch_eager_s": step_kernels * launch["eager_op_s"],
        "launch_graph_s": step_kernels * graph_s if graph_s else None,
    }
    step["floor_eager_s"] = max(step["compute_s"], step["launch_eager_s"])
    step["floor_graph_s"] = max(step["compute_s"], step["launch_graph_s"] or 0.0)
    net = {"compute_s": net_flops / peak["bf16"], "launch_eager_s": net_kernels * launch["eager_op_s"]}
    net["floor_s"] = max(net["compute_s"], net["launch_eager_s"])
    return {
        "forward_flops_per_image": per_image,
        "forward_multiply_adds_per_image": per_image // 2,
        "train_step_flops": step_flops,
        "train_step_flops_counted": counted_step_flops(name, min(args.batch, 8), shape)
        * args.batch
        // min(args.batch, 8),
        "train_batch": args.batch,
        "train_step_kernels": step_kernels,
        "train_step": step,
        "train_protocol_floor_s": {
            "eager": step["floor_eager_s"] * args.steps,
            "graph": step["floor_graph_s"] * args.steps,
        },
        "sweep_examples": args.eval_examples,
        "sweep_eval_batch": eval_batch,
        "sweep_network_flops": net_flops,
        "sweep_network_kernels": net_kernels,
        "sweep_network": net,
        "sweep_protocol_floor_s": net["floor_s"] * args.networks,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--models", default="cifar_resnet_20,cifar_vgg_16")
    p.add_argument("--batch", type=int, default=128, help="training batch (the presets')")
    p.add_argument("--eval-examples", type=int, default=10_000, help="evaluation set of a swept network")
    p.add_argument("--peak-size", type=int, default=8192, help="matmul size for the peak")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=STEPS, help="training steps of the protocol")
    p.add_argument("--networks", type=int, default=NETWORKS, help="swept networks of the protocol")
    p.add_argument("--out", default=None, help="write the figures here as JSON (default: print)")
    args = p.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    peak = peak_flops(device, args.peak_size, args.repeats)
    launch = launch_costs(device)
    doc = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "peak_flops": peak,
        "peak_size": args.peak_size,
        "launch": launch,
        "steps": args.steps,
        "networks": args.networks,
        "models": {name: model_floor(name, args, device, peak, launch) for name in args.models.split(",")},
    }
    text = json.dumps(doc, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
