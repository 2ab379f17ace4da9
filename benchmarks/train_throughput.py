"""Training throughput (images/s): linpath's loop against a plain PyTorch loop, same machine, same run.

    python benchmarks/train_throughput.py [--data-root DIR] [--iterations 10] [--models cifar_resnet_20,cifar_vgg_16]

ours:  the whole training set as one uint8 tensor on the device, batched crop+flip there
       (data/cifar10.py), channels-last, --precision (bf16 autocast by default): what train.py runs.
plain: what a user would write: a torch DataLoader over a Dataset whose __getitem__ pads, crops,
       flips and normalizes one image, batch 128, fp32, contiguous (NCHW) tensors.
Both run SGD (momentum 0.9, weight decay 1e-4) on the same model and data; each measures a fixed
number of iterations after a few warm-up ones. Uses real CIFAR-10 under --data-root when it is
there, else random images of the same shape (throughput does not depend on pixel values).
With --device cuda both loops train on the GPU, timings synchronize before and after, and fp32
is IEEE fp32 in both (TF32 off, as linpath's fp32; see linpath.runtime.device.exact_fp32).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from linpath.data.memory import InMemorySource
from linpath.data.source import Split
from linpath.models import build
from linpath.runtime.device import autocast, exact_fp32, resolve_device

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def cifar_source(data_root: str | None) -> InMemorySource:
    from linpath.data import cifar10
    from linpath.errors import LinpathError

    if data_root:
        try:
            return cifar10.load(data_root)
        except LinpathError as e:
            print(f"(no CIFAR-10: {e}; using random images)")
    g = torch.Generator().manual_seed(0)
    split = Split(
        torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(50000) % 10
    )
    return InMemorySource("random", split, split, MEAN, STD, 10, augment_fn=cifar10.crop_flip(4))


class PerImage(Dataset):
    """The plain baseline's dataset: one image at a time, torchvision-style transforms in torch ops."""

    def __init__(self, split: Split):
        self.split = split
        self.mean, self.std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        x = F.pad(self.split.images[i], (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2,)).tolist()
        x = x[:, dy : dy + 32, dx : dx + 32]
        if torch.rand(()) < 0.5:
            x = x.flip(2)
        return (x.float() / 255 - self.mean) / self.std, self.split.labels[i]


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)


def measure(step, batches, warmup: int, iterations: int, device) -> float:
    for _ in range(warmup):
        step(*next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    n = 0
    for _ in range(iterations):
        x, y = next(batches)
        step(x, y)
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def ours(name, source, device, precision, warmup, iterations) -> float:
    model = build(name, 10, seed=0).to(device).to(memory_format=torch.channels_last).train()
    opt = sgd(model)

    def step(x, y):
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        with exact_fp32(device, precision):
            loss.backward()
        opt.step()

    return measure(
        step, source.train_batches(0, 128, device=device, augment=True), warmup, iterations, device
    )


def plain(name, source, device, workers, warmup, iterations) -> float:
    model = build(name, 10, seed=0).to(device).train()
    opt = sgd(model)
    loader = DataLoader(
        PerImage(source.train),
        batch_size=128,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with exact_fp32(device, "fp32"):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()

    return measure(step, iter(loader), warmup, iterations, device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="folder holding cifar10/ (default: random images)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    p.add_argument(
        "--precision", default="bf16", choices=("fp32", "bf16"), help="our loop's precision (plain is fp32)"
    )
    p.add_argument("--models", default="cifar_resnet_20,cifar_vgg_16")
    p.add_argument(
        "--iterations",
        type=int,
        default=10,
        help="measured iterations per loop (VGG-16 runs a third as many on CPU)",
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain loop")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    source = cifar_source(args.data_root)
    if device.type == "cuda":
        print(f"GPU {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}")
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, ours {args.precision} channels-last vs plain fp32"
    )
    for name in args.models.split(","):
        its = (
            args.iterations
            if name != "cifar_vgg_16" or device.type == "cuda"
            else max(2, args.iterations // 3)
        )
        a = ours(name, source, device, args.precision, args.warmup, its)
        b = plain(name, source, device, args.workers, args.warmup, its)
        print(
            f"{name:16s} ours {a:8.0f} img/s   plain {b:8.0f} img/s   ratio {a / b:5.2f}x   ({its} iterations each)",
            flush=True,
        )


if __name__ == "__main__":
    main()
