"""The evaluation engine: many interpolated networks, the data preloaded once.

Per point x the engine writes θ(x) into one resident model in place (no load_state_dict, no
DataLoader) and streams the preloaded evaluation tensor through it in large batches.

Linear stem: when a model names its first layer as `linear_stem` (its input is the network's
input and its output is linear in its parameters), then
    stem_{θ(x)}(input) = (1 - x)·stem_{θ_start}(input) + x·stem_{θ_end}(input)
exactly (up to rounding), so the two endpoint outputs are computed once per path and mixed per
point. For LeNet-300-100 the stem is 88 % of the multiply-adds.

BatchNorm policy (recorded in every result row as `bn`):
  interpolate  the running statistics are interpolated with the weights, exactly what loading
               the mixed state dict gives (the paper's setup);
  recompute    at each point the running statistics are reset and re-estimated as a cumulative
               average over N training batches in train mode, then the network is evaluated.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import LinpathError
from .interpolate import assign_interpolation, check_compatible

BN_POLICIES = ("interpolate", "recompute")


@dataclass
class Result:
    loss: float  # mean cross-entropy
    error: float  # 1 - accuracy
    examples: int


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_model(model: nn.Module, evalset, batch_size: int = 2000, precision: str = "fp32") -> Result:
    """Mean cross-entropy and error of `model` (in eval mode) on a preloaded EvalSet."""
    model.eval()
    device = evalset.inputs.device
    loss_sum, wrong = 0.0, 0
    for inputs, labels in evalset.batches(batch_size):
        with autocast(device, precision):
            logits = model(inputs)
        logits = logits.float()
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum").double())
        wrong += int((logits.argmax(1) != labels).sum())
    n = len(evalset)
    return Result(loss_sum / n, wrong / n, n)


class _Given(nn.Module):
    """Stands in for the stem: returns a precomputed output, ignoring its input."""

    def __init__(self):
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, _input):
        return self.value


def _get_submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise LinpathError(f"model has no module {name!r} (named as its linear stem)") from None


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


class PathEvaluator:
    """Evaluates θ(x) for many x on one preloaded evaluation set.

    Parameters: `model` is any module whose state dict matches the states to interpolate;
    `evalset` an EvalSet on the evaluation device; `use_stem` lets the engine use the model's
    `linear_stem` when it has one and the stem outputs fit in `stem_memory` bytes.
    """

    def __init__(self, model: nn.Module, evalset, batch_size: int = 2000, precision: str = "fp32",
                 use_stem: bool = True, stem_memory: int = 2 << 30):
        self.device = evalset.inputs.device
        self.model = model.to(self.device).eval()
        self.evalset = evalset
        self.batch_size = batch_size
        self.precision = precision
        self.stem_name = getattr(model, "linear_stem", None) if use_stem else None
        self.stem_memory = stem_memory
        self.targets = dict(self.model.state_dict(keep_vars=True))
        self.targets = {k: (v.data if isinstance(v, nn.Parameter) else v) for k, v in self.targets.items()}

    def _to_device(self, state: dict) -> dict:
        return {k: v.to(self.device) for k, v in state.items()}

    def check(self, start: dict, end: dict) -> None:
        check_compatible(start, end)
        check_compatible(self.targets, start, "the model", "the checkpoint")

    @torch.no_grad()
    def _stem_outputs(self, stem: nn.Module, state: dict) -> list[torch.Tensor]:
        """The stem's output under `state` for every evaluation batch (the forward pass is
        cut short right after the stem)."""
        prefix = self.stem_name + "."
        stem.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        captured = []

        def capture_and_stop(module, inputs, output):
            captured.append(output.float())
            raise _StopForward

        hook = stem.register_forward_hook(capture_and_stop)
        try:
            for inputs, _ in self.evalset.batches(self.batch_size):
                with contextlib.suppress(_StopForward), autocast(self.device, self.precision):
                    self.model(inputs)
        finally:
            hook.remove()
        return captured

    @torch.no_grad()
    def _stem_bytes(self, stem: nn.Module) -> int:
        """Memory the two endpoints' stem outputs would take for the whole evaluation set."""
        sizes = []

        def measure(module, inputs, output):
            sizes.append(output[0].numel())
            raise _StopForward

        hook = stem.register_forward_hook(measure)
        try:
            with contextlib.suppress(_StopForward):
                self.model(self.evalset.inputs[:1])
        finally:
            hook.remove()
        return 2 * 4 * sizes[0] * len(self.evalset)

    @torch.no_grad()
    def evaluate_path(self, start: dict, end: dict, xs, bn: str = "interpolate", bn_batches=None) -> list[Result]:
        """Results at each x of θ(x) = (1-x)·start + x·end."""
        if bn not in BN_POLICIES:
            raise LinpathError(f"unknown BatchNorm policy {bn!r} (known: {', '.join(BN_POLICIES)})")
        self.check(start, end)
        start, end = self._to_device(start), self._to_device(end)
        stem = _get_submodule(self.model, self.stem_name) if self.stem_name else None
        if stem is None or bn == "recompute" or self._stem_bytes(stem) > self.stem_memory:
            results = []
            for x in xs:
                assign_interpolation(self.targets, start, end, float(x))
                if bn == "recompute":
                    recompute_bn_statistics(self.model, bn_batches, self.precision)
                results.append(evaluate_model(self.model, self.evalset, self.batch_size, self.precision))
            return results
        return self._evaluate_with_stem(stem, start, end, xs)

    def _evaluate_with_stem(self, stem: nn.Module, start: dict, end: dict, xs) -> list[Result]:
        h_start = self._stem_outputs(stem, start)
        h_end = self._stem_outputs(stem, end)
        given = _Given()
        _set_submodule(self.model, self.stem_name, given)
        try:
            results = []
            n = len(self.evalset)
            for x in xs:
                x = float(x)
                assign_interpolation(self.targets, start, end, x)
                loss_sum, wrong = 0.0, 0
                for (inputs, labels), a, b in zip(self.evalset.batches(self.batch_size), h_start, h_end):
                    given.value = torch.lerp(a, b, x)
                    with autocast(self.device, self.precision):
                        logits = self.model(inputs)
                    logits = logits.float()
                    loss_sum += float(F.cross_entropy(logits, labels, reduction="sum").double())
                    wrong += int((logits.argmax(1) != labels).sum())
                results.append(Result(loss_sum / n, wrong / n, n))
            return results
        finally:
            _set_submodule(self.model, self.stem_name, stem)


class _StopForward(Exception):
    pass


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches, precision: str = "fp32") -> None:
    """Reset BatchNorm running statistics and re-estimate them as a cumulative average over
    `batches` (a list of input tensors) in train mode; leaves the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    if not batches:
        raise LinpathError("the recompute BatchNorm policy needs training batches (--bn-batches > 0)")
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    try:
        for inputs in batches:
            with autocast(inputs.device, precision):
                model(inputs)
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
        model.eval()
