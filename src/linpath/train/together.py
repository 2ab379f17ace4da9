"""Training the replicates of a run together: one step for all of them as batched matrix products.

For a small fully connected model (LeNet-300-100) a step is a few small matrix products, and
the time goes to Python and dispatch overhead as much as to arithmetic. Stacking the
replicates' weights (R, out, in) makes the activation, the loss, autograd and the SGD update
one op for all replicates; the products stay one per replicate (see _StackedLinear).

Replicate r stays replicate r: its own init (seed + r), its own data order, its own loss (a
per-replicate mean, so its gradient is the one it gets alone), the SGD update of
torch.optim.SGD applied elementwise to the stacked tensors. Every product is the kernel
nn.Linear uses alone, so the steps are bitwise those of the replicate trained alone
(tests/test_together.py).
Each replicate's model holds views into the stacked tensors, so checkpoints, the log, the
resume file and the evaluation are the per-replicate code, unchanged, writing the same files.

Batching applies to LeNet in fp32 on one process, for replicates at the same step; everything
else (convnets, BatchNorm, bf16, torchrun, a replicate that is ahead) trains one at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from linpath.config.spec import Spec, build_model
from linpath.io.rundir import RunDir
from linpath.io.tensors import load_tensors
from linpath.models.lenet import LeNet
from linpath.runtime import progress as plain_progress
from linpath.runtime.device import exact_fp32, resolve_device
from linpath.runtime.distributed import World
from linpath.train.loop import Branch, train_replicate
from linpath.train.replicate import Replicate, State, progress_bar


def train_replicates(
    spec: Spec,
    run: RunDir,
    replicates,
    source,
    device: str = "cpu",
    progress: bool = True,
    world: World = World(),
    stop_after: int | None = None,
    batched: bool = True,
) -> None:
    """Train every unfinished replicate: together where batching applies, else one at a time."""
    if world.active:  # every rank runs every replicate (train_replicate agrees on DONE across ranks)
        pending, groups = list(replicates), []
    else:
        pending = [r for r in replicates if not run.done_marker(r).exists()]
        groups = _groups(spec, run, pending, source) if batched else []
    together = {r for group in groups for r in group}
    for group in groups:
        _train_group(spec, run, group, source, device, progress, stop_after)
    for r in pending:
        if r not in together:
            train_replicate(
                spec, run, r, source, device, progress, world, branch=Branch(stop_after=stop_after)
            )


def _groups(spec: Spec, run: RunDir, pending: list[int], source) -> list[list[int]]:
    """The replicates that can train together: two or more at the same step, of a batchable spec."""
    if len(pending) < 2 or spec.train.precision != "fp32" or spec.train.optimizer != "sgd":
        return []
    if not isinstance(build_model(spec, source.num_classes, spec.train.seed), LeNet):
        return []
    by_step: dict[int, list[int]] = {}
    for r in pending:
        by_step.setdefault(_resume_step(run, r), []).append(r)
    return [group for group in by_step.values() if len(group) >= 2]


def _resume_step(run: RunDir, r: int) -> int:
    return int(load_tensors(run.resume_file(r))["step"]) if run.resume_file(r).exists() else 0


class _StackedLinear(torch.autograd.Function):
    """y[r] = x[r] W[r]^T + b[r] for every replicate r, each product the one nn.Linear's
    autograd computes alone (addmm forward, mm for both gradients), written in place into the
    stacked outputs. Batched products (baddbmm, bmm) are faster but not bitwise the same on
    every CPU: on an AVX-512/AMX Xeon baddbmm differs from addmm in the last bits for the
    784->300 layer, and SGD at lr 0.1 amplifies such differences to 1e-3 within a few hundred
    steps, so a replicate trained together would no longer be the one trained alone."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        y = x.new_empty(x.shape[0], x.shape[1], w.shape[1])
        for r in range(len(x)):
            torch.addmm(b[r], x[r], w[r].t(), out=y[r])
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = None
        if ctx.needs_input_grad[0]:
            gx = torch.empty_like(x)
            for r in range(len(g)):
                torch.mm(g[r], w[r], out=gx[r])
        gw = torch.empty_like(w)  # each replicate's product written in place: no stacking copy
        for r in range(len(g)):
            torch.mm(g[r].t(), x[r], out=gw[r])
        return gx, gw, g.sum(1)


class StackedLeNet:
    """The replicates' LeNets as stacked leaf tensors; each model's parameters become views of them."""

    def __init__(self, states: list[State], momentum: float, weight_decay: float):
        models = [s.model for s in states]
        self.names = [name for name, _ in models[0].named_parameters()]
        self.params = []
        for name in self.names:
            own = [dict(m.named_parameters())[name] for m in models]
            stacked = torch.stack([p.detach() for p in own]).requires_grad_(True)
            for r, p in enumerate(own):
                p.data = stacked.detach()[r]  # the model now reads and saves the stacked values
            self.params.append(stacked)
        self.states, self.momentum, self.weight_decay = states, momentum, weight_decay
        self.buffers = self._momentum_buffers(states) if momentum else None

    def _momentum_buffers(self, states: list[State]) -> list[torch.Tensor] | None:
        """The optimizers' momentum buffers, stacked (None before the first step, as in SGD)."""
        found = []
        for name in self.names:
            bufs = []
            for s in states:
                p = dict(s.model.named_parameters())[name]
                bufs.append(s.optimizer.state.get(p, {}).get("momentum_buffer"))
            if any(b is None for b in bufs):
                return None
            found.append(torch.stack(bufs))
        return found

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """LeNet.forward for all replicates: inputs (R, B, ...) -> logits (R, B, classes)."""
        x = inputs.flatten(2)
        pairs = list(zip(self.params[0::2], self.params[1::2]))
        for i, (w, b) in enumerate(pairs):
            x = _StackedLinear.apply(x, w, b)
            if i < len(pairs) - 1:
                x = torch.relu(x)
        return x

    def step(self, inputs: torch.Tensor, labels: torch.Tensor, lr: float) -> torch.Tensor:
        """One SGD step of every replicate; returns the replicates' losses (R,), detached."""
        logits = self.forward(inputs)
        losses = torch.stack([F.cross_entropy(logits[r], labels[r]) for r in range(len(logits))])
        grads = torch.autograd.grad(losses.sum(), self.params)
        with torch.no_grad():
            self._update(grads, lr)
        return losses.detach()

    def _update(self, grads, lr: float) -> None:
        """torch.optim.SGD's update (single-tensor form, dampening 0, no Nesterov), elementwise."""
        if self.weight_decay:
            grads = [g.add(p, alpha=self.weight_decay) for g, p in zip(grads, self.params)]
        if self.momentum:
            if self.buffers is None:
                self.buffers = [g.clone() for g in grads]
            else:
                for buf, g in zip(self.buffers, grads):
                    buf.mul_(self.momentum).add_(g)
            grads = self.buffers
        for p, g in zip(self.params, grads):
            p.add_(g, alpha=-lr)

    def sync_optimizer(self, r: int) -> None:
        """Put replicate r's momentum buffers in its optimizer (as SGD keeps them), for its resume file."""
        if self.buffers is None:
            return
        s = self.states[r]
        named = dict(s.model.named_parameters())
        for name, buf in zip(self.names, self.buffers):
            s.optimizer.state[named[name]] = {"momentum_buffer": buf[r].clone()}


def _train_group(
    spec: Spec, run: RunDir, group: list[int], source, device: str, progress, stop_after
) -> None:
    """Each replicate built, restored and started as it is alone (replicate.py), then stepped
    together; each one's hooks after every step, and each finished as alone."""
    dev = resolve_device(device)
    plain = progress and plain_progress.plain()
    evalset = source.eval_set("test", dev)
    reps = [Replicate(spec, run, r, source, dev).restore() for r in group]
    for rep in reps:
        rep.start(evalset, plain)
    stack = StackedLeNet([rep.state for rep in reps], spec.train.momentum, spec.train.weight_decay)
    step = reps[0].state.step
    batches = [
        source.train_batches(
            rep.seed, spec.data.batch_size, start_step=step, device=dev, augment=spec.data.augment
        )
        for rep in reps
    ]
    with exact_fp32(dev, "fp32"):  # no TF32 on CUDA, as when trained alone
        _steps(stack, batches, reps, reps[0].end(stop_after), progress and not plain)
    for rep in reps:
        rep.finish()


def _steps(stack: StackedLeNet, batches, reps: list[Replicate], end: int, bar_on: bool) -> None:
    """Steps until `end`, with each replicate's hooks after each step."""
    names = ",".join(str(rep.r) for rep in reps)
    step = reps[0].state.step
    bar = progress_bar(reps[0].schedule.total, step, f"train replicates {names}", bar_on)
    while step < end:
        pairs = [next(b) for b in batches]
        losses = stack.step(
            torch.stack([x for x, _ in pairs]),
            torch.stack([y for _, y in pairs]),
            reps[0].schedule.lr_at(step),
        )
        step += 1
        for i, rep in enumerate(reps):
            s = rep.state
            s.step = step
            s.loss_sum = s.loss_sum + losses[i]
            s.loss_count += 1
            if rep.saves_at(step):
                stack.sync_optimizer(i)
            rep.after_step()
        bar.update(1)
    bar.close()
