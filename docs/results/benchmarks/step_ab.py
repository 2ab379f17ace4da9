"""A/B, alternating in one process: the joint LeNet step of train/together.py ("old": one baddbmm
per layer, a cross-entropy per replicate, weight decay out of place) against a tried rewrite
("new": an addmm per replicate, one cross-entropy over all examples, weight decay in place). Checks that
both give bitwise the same weights and losses (with the preset's plain SGD, and with momentum 0.9
and weight decay 1e-4), then times rounds of 200 steps on real batches with the preset's SGD.

    python docs/results/benchmarks/step_ab.py [DATA_ROOT] [ROUNDS]   (default /work/shared/data 14)
"""

import statistics
import sys
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from linpath import data
from linpath.models import build
from linpath.train import together

R, B, STEPS = 3, 128, 200
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 14
src = data.load("mnist", sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data")
its = [src.train_batches(r, B) for r in range(R)]
batches = []
for _ in range(STEPS):
    pairs = [next(i) for i in its]
    batches.append((torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])))


class TriedLinear(torch.autograd.Function):
    """The forward as one addmm per replicate (nn.Linear's kernel) instead of one baddbmm."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        y = x.new_empty(x.shape[0], x.shape[1], w.shape[1])
        for r in range(len(x)):
            torch.addmm(b[r], x[r], w[r].t(), out=y[r])
        return y

    backward = together._StackedLinear.backward


class Tried(together.StackedLeNet):
    """addmm forward, the gradient from one cross-entropy over all examples (sum / batch), weight
    decay in place, the logged losses each replicate's own mean."""

    def forward(self, inputs):
        x = inputs.flatten(2)
        for i in range(3):
            x = TriedLinear.apply(x, self.params[2 * i], self.params[2 * i + 1])
            x = torch.relu(x) if i < 2 else x
        return x

    def step(self, inputs, labels, lr):
        logits = self.forward(inputs)
        replicates, batch = labels.shape
        each = F.cross_entropy(logits.view(replicates * batch, -1), labels.view(-1), reduction="none")
        grads = torch.autograd.grad(each.sum() / batch, self.params)
        with torch.no_grad():
            for g, p in zip(grads, self.params):
                g.add_(p, alpha=self.weight_decay)
            if self.momentum:
                if self.buffers is None:
                    self.buffers = [g.clone() for g in grads]
                else:
                    for buf, g in zip(self.buffers, grads):
                        buf.mul_(self.momentum).add_(g)
                grads = self.buffers
            for p, g in zip(self.params, grads):
                p.add_(g, alpha=-lr)
            return torch.stack([F.cross_entropy(logits[r], labels[r]) for r in range(replicates)])


def stacked(cls, momentum=0.0, weight_decay=0.0):
    states = [
        SimpleNamespace(model=build("mnist_lenet_300_100", 10, seed=r), optimizer=SimpleNamespace(state={}))
        for r in range(R)
    ]
    return cls(states, momentum, weight_decay)


for momentum, decay in ((0.0, 0.0), (0.9, 1e-4)):
    old, new = stacked(together.StackedLeNet, momentum, decay), stacked(Tried, momentum, decay)
    same = True
    for inputs, labels in batches:
        same &= torch.equal(old.step(inputs, labels, 0.1), new.step(inputs, labels, 0.1))
    same &= all(torch.equal(a, b) for a, b in zip(old.params, new.params))
    print(
        f"momentum {momentum}, weight decay {decay}: bitwise equal after {STEPS} steps (weights and losses): {same}"
    )
old, new = stacked(together.StackedLeNet), stacked(Tried)  # the preset's SGD: no momentum, no decay
times = {"old": [], "new": []}
for rnd in range(ROUNDS):
    for name, stack in (("old", old), ("new", new)):
        t = time.perf_counter()
        for inputs, labels in batches:
            stack.step(inputs, labels, 0.01)
        times[name].append((time.perf_counter() - t) / STEPS * 1e3)
    print(f"round {rnd + 1}: old {times['old'][-1]:.2f} ms/step, new {times['new'][-1]:.2f} ms/step")
ratios = [a / b for a, b in zip(times["old"], times["new"])]
print(
    f"best old {min(times['old']):.2f}, best new {min(times['new']):.2f} ms/step; "
    f"old/new per round: median {statistics.median(ratios):.3f}, new faster in {sum(r > 1 for r in ratios)}/{ROUNDS}"
)
