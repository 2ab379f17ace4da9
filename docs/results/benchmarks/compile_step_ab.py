"""A/B, alternating in one process: the joint LeNet step of train/together.py (eager) against the
same step with its forward and loss under torch.compile (inductor; backward compiled by AOTAutograd),
the SGD update eager in both. Prints the first compiled step (compilation included) and ms per step.

    python docs/results/benchmarks/compile_step_ab.py [DATA_ROOT]   (default /work/shared/data)
"""

import sys
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from linpath import data
from linpath.models import build
from linpath.train import together

R, B, STEPS = 3, 128, 200
src = data.load("mnist", sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data")
its = [src.train_batches(r, B) for r in range(R)]
batches = []
for _ in range(STEPS):
    pairs = [next(i) for i in its]
    batches.append((torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])))


def stacked():
    states = [
        SimpleNamespace(model=build("mnist_lenet_300_100", 10, seed=r), optimizer=SimpleNamespace(state={}))
        for r in range(R)
    ]
    return together.StackedLeNet(states, 0.9, 1e-4)


def losses_of(params, inputs, labels):
    x = inputs.flatten(2)
    for i in range(3):
        x = torch.baddbmm(params[2 * i + 1].unsqueeze(1), x, params[2 * i].transpose(1, 2))
        x = torch.relu(x) if i < 2 else x
    return F.cross_entropy(x.reshape(R * B, -1), labels.reshape(-1), reduction="none").view(R, B).mean(1)


eager = stacked()
params = [p.detach().clone().requires_grad_(True) for p in stacked().params]
buffers = [torch.zeros_like(p) for p in params]
compiled = torch.compile(losses_of)


def compiled_step(inputs, labels, lr):
    compiled(params, inputs, labels).sum().backward()
    with torch.no_grad():
        for p, buf in zip(params, buffers):
            buf.mul_(0.9).add_(p.grad.add(p, alpha=1e-4))
            p.add_(buf, alpha=-lr)
            p.grad = None


t = time.perf_counter()
compiled_step(*batches[0], 0.01)
print(f"first compiled step (compilation included): {time.perf_counter() - t:.1f} s")
for inputs, labels in batches[:20]:
    compiled_step(inputs, labels, 0.01)
    eager.step(inputs, labels, 0.01)
for rnd in range(4):
    timings = {}
    for name, step in (("eager", eager.step), ("compiled", compiled_step)):
        t = time.perf_counter()
        for inputs, labels in batches:
            step(inputs, labels, 0.01)
        timings[name] = (time.perf_counter() - t) / STEPS * 1e3
    print(f"round {rnd + 1}: eager {timings['eager']:.2f} ms/step, compiled {timings['compiled']:.2f} ms/step")
