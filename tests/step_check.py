"""One SGD step of a device against a float64 reference of the same step.

A device's step is checked from the device's own state before it (model state and SGD momentum
buffers), with the same batch (the same augmentation) and learning rate: the reference takes the
step in float64 on the CPU, and the device's state after the step must agree with it to within
the rounding of fp32 for this step. Comparing step by step from the device's own trajectory
keeps the amplification of rounding by later steps (BatchNorm, momentum, lr 0.1) out of it.

The tolerance, per group of tensors (parameters, momentum buffers, BatchNorm running
statistics), is on the error as a share of the step's change, ||device - ref|| / ||ref - before||
(L2 over the group). An a-priori bound from eps_fp32 does not work here: the step's sums have up
to batch x H x W = 131,072 terms and cancel heavily (BatchNorm's backward), so n·eps·|result| is
exceeded on the CPU itself (3e-3 of the change of a BatchNorm bias against n·eps = 2e-4), while
n·eps·Σ|terms| would need every layer's terms. Instead the rounding of this very step is
measured: the same step in fp32 on the CPU in other orders of summation (the batch permuted;
NCHW and NHWC convolutions, which use other algorithms) against float64. The device must be within
SAFETY times the largest of those errors (another device's algorithms, e.g. FFT or Winograd
convolutions, round differently), and FLOOR is always allowed: rounding depends on the order of
the examples more than the other orders show (one 4-example ResNet-20 step on this CPU, NHWC:
1.7e-3 of the change in the loop's order, 1.4e-5 in every other order tried; 3.6e-3 the most
seen), so FLOOR is that with a margin of about 3. Real differences (another batch,
another augmentation, BatchNorm in eval mode, another data order, another learning rate) change
the step by about its own size, 0.5-1 of it, so they fail; an order of summation does not.
Integer buffers (BatchNorm's num_batches_tracked) must be equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from linpath.models import build

EPS32 = torch.finfo(torch.float32).eps
SAFETY = 16.0
FLOOR = 1e-2  # relative to the step's change: 50-100 times below the 0.5-1 of a real difference


@dataclass
class Sgd:
    """The model and the optimizer's fixed settings."""

    model: str
    num_classes: int
    momentum: float
    weight_decay: float


@dataclass
class Step:
    """A step's inputs: the state before it (CPU), the batch, the learning rate."""

    state: dict  # the model's state dict
    momentum: dict  # parameter name -> momentum buffer; empty before the first step
    inputs: torch.Tensor  # (B, C, H, W) float32, as the device got it (augmented, normalized)
    labels: torch.Tensor
    lr: float


@dataclass
class After:
    """A step's result: the state after it and the batch's loss."""

    state: dict
    momentum: dict
    loss: float


def take(sgd: Sgd, step: Step, dtype=torch.float64, channels_last=False, order=None, train=True) -> After:
    """The step in `dtype` on the CPU (torch.optim.SGD, as linpath's loops), the batch's
    examples in `order` (a permutation: the same step in another order of summation)."""
    model = build(sgd.model, sgd.num_classes, seed=0).to(dtype)
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in step.state.items()})
    model.train(train)
    inputs, labels = step.inputs.to(dtype), step.labels
    if order is not None:
        inputs, labels = inputs[order], labels[order]
    if channels_last:
        model, inputs = (
            model.to(memory_format=torch.channels_last),
            inputs.contiguous(memory_format=torch.channels_last),
        )
    opt = torch.optim.SGD(
        model.parameters(), lr=step.lr, momentum=sgd.momentum, weight_decay=sgd.weight_decay
    )
    named = dict(model.named_parameters())
    for name, buf in step.momentum.items():
        opt.state[named[name]]["momentum_buffer"] = buf.to(dtype).clone()
    loss = F.cross_entropy(model(inputs), labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return After(*state_of(model, opt), loss.item())


def state_of(model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(model state, momentum buffers by parameter name), contiguous CPU copies."""
    copy = lambda t: t.detach().to("cpu", memory_format=torch.contiguous_format).clone()  # noqa: E731
    state = {k: copy(v) for k, v in model.state_dict().items()}
    momentum = {
        name: copy(opt.state[p]["momentum_buffer"])
        for name, p in model.named_parameters()
        if opt.state.get(p, {}).get("momentum_buffer") is not None
    }
    return state, momentum


def group_of(key: str) -> str:
    if key.startswith("momentum:"):
        return "momentum buffers"
    if key.endswith(("running_mean", "running_var")):
        return "BatchNorm statistics"
    return "parameters"


def _flat(state: dict, momentum: dict) -> dict:
    return {**state, **{f"momentum:{k}": v for k, v in momentum.items()}}


def relative_errors(step: Step, result: After, ref: After) -> dict[str, float]:
    """Per group, ||result - ref|| / ||ref - before||; inf where an integer buffer differs."""
    before, got, want = (
        _flat(step.state, step.momentum),
        _flat(result.state, result.momentum),
        _flat(ref.state, ref.momentum),
    )
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for k, w in want.items():
        if not w.is_floating_point():
            if not torch.equal(got[k], w):
                num["integer buffers"], den["integer buffers"] = float("inf"), 1.0
            continue
        g = group_of(k)
        b = before[k].double() if k in before else torch.zeros_like(w, dtype=torch.float64)
        num[g] = num.get(g, 0.0) + float((got[k].double() - w.double()).pow(2).sum())
        den[g] = den.get(g, 0.0) + float((w.double() - b).pow(2).sum())
    return {
        g: (num[g] / den[g]) ** 0.5 if den[g] > 0 else (0.0 if num[g] == 0 else float("inf")) for g in num
    }


# the same step in fp32 in other orders of summation: (channels_last, order: None | "reversed" | seed)
FP32_ORDERS = [(False, None), (False, "reversed"), (True, 1)]


def _order(how, n: int):
    if how is None:
        return None
    if how == "reversed":
        return torch.arange(n - 1, -1, -1)
    return torch.randperm(n, generator=torch.Generator().manual_seed(how))


def rounding_scale(sgd: Sgd, step: Step, ref: After) -> dict[str, float]:
    """Per group, the largest relative error of fp32 CPU computations of the step against float64."""
    scale: dict[str, float] = {}
    for channels_last, how in FP32_ORDERS:
        variant = take(sgd, step, torch.float32, channels_last, _order(how, len(step.labels)))
        for g, e in relative_errors(step, variant, ref).items():
            scale[g] = max(scale.get(g, 0.0), e)
    return scale


@dataclass
class Verdict:
    errors: dict[str, float]
    tolerances: dict[str, float]
    ref: After

    @property
    def failures(self) -> list[str]:
        return [
            f"{g}: {e:.3g} of the step's change > {self.tolerances[g]:.3g}"
            for g, e in self.errors.items()
            if not e <= self.tolerances[g]
        ]


def check(sgd: Sgd, step: Step, result: After) -> Verdict:
    """The device's `result` of `step` against float64 (see the module docstring)."""
    ref = take(sgd, step)
    scale = rounding_scale(sgd, step, ref)
    errors = relative_errors(step, result, ref)
    tolerances = {
        g: 0.0 if g == "integer buffers" else max(FLOOR, SAFETY * scale.get(g, 0.0)) for g in errors
    }
    return Verdict(errors, tolerances, ref)


def check_trajectory(sgd: Sgd, init: dict, recorded: dict, batches: list, lrs: list) -> tuple[list, list]:
    """Every recorded step checked (step t+1's state from step t's, the first from `init`):
    the failures, each naming its step, and the float64 losses of the steps."""
    failures, losses = [], []
    previous = (init, {})
    for t, ((inputs, labels), lr) in enumerate(zip(batches, lrs)):
        state, momentum = recorded[t + 1]
        verdict = check(sgd, Step(*previous, inputs, labels, lr), After(state, momentum, float("nan")))
        failures += [f"step {t}: {f}" for f in verdict.failures]
        losses.append(verdict.ref.loss)
        previous = (state, momentum)
    return failures, losses


class Recorder:
    """A loop callback (train_replicate(callbacks=...)) keeping every step's state on the CPU."""

    def __init__(self):
        self.states: dict[int, tuple[dict, dict]] = {}

    def __call__(self, rep) -> None:
        self.states[rep.state.step] = state_of(rep.state.model, rep.state.optimizer)


def batches_of(source, seed: int, batch_size: int, steps: int, augment: bool) -> list[tuple]:
    """The batches of steps 0..steps-1 as the per-replicate loop gets them on the CPU."""
    it = source.train_batches(seed, batch_size, device="cpu", augment=augment)
    return [next(it) for _ in range(steps)]
