"""Folding eval-mode BatchNorm into the preceding convolutions, for fast evaluation.

In eval mode a BatchNorm is a per-channel affine map, so a convolution
whose output feeds only a BatchNorm equals one convolution with W' = W·γ/√(var+eps) (per
output channel) and b' = (b - μ)·γ/√(var+eps) + β. The engine finds such pairs once (torch.fx
trace; each module called once, the convolution's output used by the BatchNorm alone), keeps
a second, "folded" copy of the model (sharing every other tensor) whose BatchNorms are
Identity, and checks at construction that the copy computes what the model does (with
randomized BatchNorm entries); any failure means no folding. At each x, after θ(x) is
written (and, under `recompute`, the statistics re-estimated on the unfolded model), the
folded weights are recomputed (one pass over the convolutions' weights) and the folded copy
evaluates. The stem convolution is not folded when the stem is mixed. `fold_bn=False` turns
folding off.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn

from linpath.engine.outputs import default_logits


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at a dotted name (the engine swaps in folded or given layers)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def conv_bn_pairs(model: nn.Module, exclude: str | None = None) -> list[tuple[str, str]]:
    """(conv, BatchNorm) module names where the convolution's output feeds only that
    BatchNorm, each called once in the traced forward (empty when the model does not trace)."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:
        return []
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    attrs = [n.target for n in graph.nodes if n.op == "get_attr"]

    def inside(name, prefix):
        return name is not None and prefix is not None and (name == prefix or name.startswith(prefix + "."))

    pairs = []
    for node in graph.nodes:
        conv = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(conv, nn.modules.conv._ConvNd) or conv.transposed or calls[node.target] != 1:
            continue
        if len(node.users) != 1:
            continue
        (user,) = node.users
        bn = modules.get(user.target) if user.op == "call_module" else None
        if (
            not isinstance(bn, nn.modules.batchnorm._BatchNorm)
            or calls[user.target] != 1
            or not bn.track_running_stats
            or bn.num_features != conv.out_channels
            or tuple(user.args) != (node,)
            or user.kwargs
        ):
            continue
        if inside(node.target, exclude) or inside(user.target, exclude) or inside(exclude, node.target):
            continue
        if any(inside(a, node.target) or inside(a, user.target) for a in attrs):
            continue
        if not conv.weight.is_floating_point():
            continue
        pairs.append((node.target, user.target))
    return pairs


class Folding:
    """A copy of `model` (sharing all its tensors except the folded convolutions' weight and
    bias) whose conv→BatchNorm pairs are single convolutions; `apply()` recomputes the folded
    weights from the model's current state."""

    def __init__(self, model: nn.Module, pairs: list[tuple[str, str]]):
        memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
        self.model = copy.deepcopy(model, memo)
        self.pairs = []
        for conv_name, bn_name in pairs:
            conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
            folded = self.model.get_submodule(conv_name)
            w = conv.weight
            folded.weight = nn.Parameter(torch.empty_like(w), requires_grad=False)
            folded.bias = nn.Parameter(
                torch.zeros(w.shape[0], dtype=w.dtype, device=w.device), requires_grad=False
            )
            set_submodule(self.model, bn_name, nn.Identity())
            self.pairs.append((conv, bn, folded))
        self.model.eval()

    @torch.no_grad()
    def apply(self) -> None:
        for conv, bn, folded in self.pairs:
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            w = conv.weight
            torch.mul(w, scale.view(-1, *([1] * (w.dim() - 1))).to(w.dtype), out=folded.weight)
            shift = -bn.running_mean * scale
            if conv.bias is not None:
                shift = shift + conv.bias * scale
            if bn.bias is not None:
                shift = shift + bn.bias
            folded.bias.copy_(shift)

    @torch.no_grad()
    def check(self, model: nn.Module, targets: dict, example: torch.Tensor) -> bool:
        """Whether the folded copy computes what `model` does on `example`, with every
        folded BatchNorm's entries randomized (then restored)."""
        saved = {k: v.clone() for k, v in targets.items()}
        g = torch.Generator().manual_seed(0)
        try:
            for _, bn, _ in self.pairs:
                for t, lo, hi in (
                    (bn.running_mean, -0.5, 0.5),
                    (bn.running_var, 0.3, 2.0),
                    (bn.weight, 0.5, 1.5),
                    (bn.bias, -0.5, 0.5),
                ):
                    if t is not None:
                        t.copy_(torch.rand(t.shape, generator=g, dtype=torch.float64).mul(hi - lo).add(lo))
            self.apply()
            model.eval()
            a, b = default_logits(model(example)), default_logits(self.model(example))
            if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
                return False
            a, b = a.double(), b.double()
            return bool(torch.isfinite(a).all()) and bool((a - b).abs().max() <= 1e-4 * (1 + a.abs().max()))
        except Exception:
            return False
        finally:
            for k, v in saved.items():
                targets[k].copy_(v)
