"""Second-order Taylor mode along a line: L, L' and L'' of a model's loss in one pass of jets.

torch.func's jvp of a jvp runs a Linear layer's matrix product 10 times where a second-order
Taylor pass needs 2 (benchmarks/nested_jvp_floor.py), so the curvature cost 10 forward passes.
Here the model is traced by torch.fx and every value is a jet (h, h', h''): its derivatives in x
along θ(x) = θ + x·u. Linear and convolution layers are linear in their input and their weight
(W' = U, W'' = 0), so
    y = W·h + b,   y' = W·h' + U·h + V,   y'' = W·h'' + 2·U·h'
five products in all (three by W, two by U; two for a first layer fed by the data, whose h' and
h'' are zero), each run on its own and summed in place. ReLU masks, sums
add, eval-mode BatchNorm has its formula's derivatives; any other node gets its jet by nested jvp
of that node alone along s ↦ h + s·h' + s²/2·h'' (exact to second order, and cheap where the node
is elementwise). A model torch.fx cannot trace, or a node that returns neither tensors nor
constants, has no Taylor pass: `TaylorPass.build` returns None and the caller uses jvp twice.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp
from torch.utils._pytree import tree_flatten, tree_unflatten


@dataclass
class Jet:
    """A value and its first and second derivatives in x (None: zero)."""

    value: torch.Tensor
    d1: torch.Tensor | None = None
    d2: torch.Tensor | None = None


class NoTaylor(Exception):
    """The model has a node the Taylor pass cannot carry (the caller falls back)."""


def _plus(*terms):
    """The sum of the terms that are not None (None when all are)."""
    kept = [t for t in terms if t is not None]
    return None if not kept else kept[0] if len(kept) == 1 else sum(kept[1:], kept[0])


def _accumulate(total: torch.Tensor | None, term: torch.Tensor | None, alpha: float = 1.0):
    """total + alpha·term, in place: both are fresh products of the same shape (None: zero)."""
    if term is None:
        return total
    if total is None:
        return term if alpha == 1.0 else term.mul_(alpha)
    return total.add_(term, alpha=alpha)


def linear_jet(h: Jet, product: Callable, weight: Jet, bias: Jet | None, bias_shape) -> Jet:
    """The jet of product(h, W) + b for a product linear in both (a Linear or a convolution):
    y = W·h + b, y' = W·h' + U·h + V, y'' = W·h'' + 2·U·h' (the products are fresh tensors, so the
    sums are made in place)."""
    u = weight.d1
    y = product(h.value, weight.value)
    y1 = None if h.d1 is None else product(h.d1, weight.value)
    y1 = _accumulate(y1, None if u is None else product(h.value, u))
    y2 = None if h.d2 is None else product(h.d2, weight.value)
    y2 = _accumulate(y2, None if u is None or h.d1 is None else product(h.d1, u), alpha=2.0)
    if bias is not None:
        y = y.add_(bias.value.view(bias_shape))
        if bias.d1 is not None:
            v = bias.d1.view(bias_shape)
            y1 = v.expand_as(y).clone() if y1 is None else y1.add_(v)
    return Jet(y, y1, y2)


def relu_jet(h: Jet) -> Jet:
    """ReLU: the derivatives masked where the value is positive (torch's derivative at 0 is 0)."""
    mask = (h.value > 0).to(h.value.dtype)
    return Jet(F.relu(h.value), None if h.d1 is None else h.d1 * mask, None if h.d2 is None else h.d2 * mask)


def _channel(jet: Jet | None, shape) -> tuple:
    """A per-channel tensor's value and derivative in x, shaped to broadcast (None: absent)."""
    if jet is None:
        return None, None
    return jet.value.view(shape), None if jet.d1 is None else jet.d1.view(shape)


def batch_norm_jet(h: Jet, stats: dict[str, Jet], eps: float) -> Jet:
    """Eval-mode BatchNorm (h − μ)·γ/√(σ² + ε) + β with each of μ, σ², γ, β moving along the line,
    as y = a·h + k with a = γ/√(σ² + ε) and k = β − a·μ per channel (a'' and k'' from γ'' = μ'' =
    σ²'' = β'' = 0), so that only three fused products touch the activations' size."""
    shape = (1, -1) + (1,) * (h.value.dim() - 2)
    mean, dmean = _channel(stats["running_mean"], shape)
    var, dvar = _channel(stats["running_var"], shape)
    gamma, dgamma = _channel(stats.get("weight"), shape)
    beta, dbeta = _channel(stats.get("bias"), shape)
    q = var + eps
    r = q.rsqrt()
    r1 = torch.zeros_like(r) if dvar is None else -0.5 * r / q * dvar
    r2 = torch.zeros_like(r) if dvar is None else 0.75 * r / (q * q) * dvar * dvar
    g, g1 = (torch.ones_like(r), 0.0) if gamma is None else (gamma, 0.0 if dgamma is None else dgamma)
    a, a1, a2 = g * r, g1 * r + g * r1, 2 * g1 * r1 + g * r2
    m1 = 0.0 if dmean is None else dmean
    k = (0.0 if beta is None else beta) - a * mean
    k1 = (0.0 if dbeta is None else dbeta) - a1 * mean - a * m1
    k2 = -a2 * mean - 2 * a1 * m1
    y = torch.addcmul(k, h.value, a)
    y1 = torch.addcmul(k1, h.value, a1)
    y2 = torch.addcmul(k2, h.value, a2)
    if h.d1 is not None:
        y1.addcmul_(h.d1, a)
        y2.addcmul_(h.d1, a1, value=2.0)
    if h.d2 is not None:
        y2.addcmul_(h.d2, a)
    return Jet(y, y1, y2)


def lifted(fn: Callable, args: tuple, kwargs: dict) -> object:
    """fn's output as jets, by nested jvp of fn along each jet argument's quadratic in s; a call
    without jets is run as it is, and an output without floating tensors is a constant."""
    leaves, spec = tree_flatten((args, kwargs))
    jets = [i for i, leaf in enumerate(leaves) if isinstance(leaf, Jet)]
    values = [leaf.value if isinstance(leaf, Jet) else leaf for leaf in leaves]
    if not jets:
        a, k = tree_unflatten(values, spec)
        return fn(*a, **k)

    def along(s):
        moved = list(values)
        for i in jets:
            j = leaves[i]
            moved[i] = _plus(
                j.value, None if j.d1 is None else s * j.d1, None if j.d2 is None else 0.5 * s * s * j.d2
            )
        a, k = tree_unflatten(moved, spec)
        return fn(*a, **k)

    with torch.no_grad():
        plain = along(torch.zeros((), dtype=torch.float64))
    out_leaves, _ = tree_flatten(plain)
    if not any(isinstance(t, torch.Tensor) and t.is_floating_point() for t in out_leaves):
        return plain
    if not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in out_leaves):
        raise NoTaylor(f"{fn} returns a mix of tensors and other values")
    s, one = torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64)

    def first(t):
        value, slope = jvp(along, (t,), (one,))
        return slope, value

    slope, curvature, value = jvp(first, (s,), (one,), has_aux=True)
    return _zip_jets(value, slope, curvature)


def _zip_jets(value, slope, curvature):
    """Jets from three pytrees of the same structure (a tensor, or tuples and lists of them)."""
    if isinstance(value, torch.Tensor):
        return Jet(value, slope, curvature)
    flat_v, spec = tree_flatten(value)
    flat_s, _ = tree_flatten(slope)
    flat_c, _ = tree_flatten(curvature)
    return tree_unflatten([Jet(*t) for t in zip(flat_v, flat_s, flat_c)], spec)


CONVOLUTIONS = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
RELUS = {F.relu, torch.relu}
ADDS = {operator.add, torch.add}
IN_PLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


def layer_jet(module: nn.Module, h: Jet, own: dict[str, Jet]) -> Jet | None:
    """The jet of a Linear, convolution, ReLU or eval-mode BatchNorm module by its rule above
    (None for any other module: it is lifted)."""
    if isinstance(module, nn.Linear):
        return linear_jet(h, F.linear, own["weight"], own.get("bias"), (-1,))
    conv = CONVOLUTIONS.get(type(module))
    if conv is not None and module.padding_mode == "zeros":

        def product(x, w):
            return conv(x, w, None, module.stride, module.padding, module.dilation, module.groups)

        return linear_jet(h, product, own["weight"], own.get("bias"), (1, -1) + (1,) * (h.value.dim() - 2))
    if isinstance(module, nn.ReLU):
        return relu_jet(h)
    if (
        isinstance(module, nn.modules.batchnorm._BatchNorm)
        and not module.training
        and module.track_running_stats
    ):
        return batch_norm_jet(h, own, module.eps)
    return None


class TaylorPass:
    """The loss's jet along a tangent through the traced model. `tangent` maps every tensor name
    of the model (tied names each) that moves to its direction u; the model holds θ(x)."""

    def __init__(self, model: nn.Module, graph: fx.GraphModule):
        self.model, self.graph = model, graph

    @classmethod
    def build(cls, model: nn.Module) -> TaylorPass | None:
        try:
            return cls(model, fx.symbolic_trace(model))
        except Exception:  # torch.fx raises many kinds on what it cannot trace  # noqa: BLE001
            return None

    def _tensor(self, name: str, tangent: dict) -> Jet:
        value = self.model
        for part in name.split("."):
            value = getattr(value, part)
        return Jet(value, tangent.get(name))

    def _module(self, name: str, args, kwargs, tangent: dict):
        module = self.model.get_submodule(name)
        own = {k: Jet(t, tangent.get(f"{name}.{k}")) for k, t in module.state_dict(keep_vars=True).items()}
        if len(args) == 1 and isinstance(args[0], (Jet, torch.Tensor)) and not kwargs:
            h = args[0] if isinstance(args[0], Jet) else Jet(args[0])  # the data: no derivatives
            jet = layer_jet(module, h, own)
            if jet is not None:
                return jet
        moving = {k: j for k, j in own.items() if j.d1 is not None}

        def call(params, *a, **k):
            return functional_call(module, params, a, k) if params else module(*a, **k)

        return lifted(call, (moving, *args), kwargs)

    def _node(self, node: fx.Node, args, kwargs, tangent: dict):
        if node.op == "get_attr":
            return self._tensor(node.target, tangent)
        if node.op == "call_module":
            return self._module(node.target, args, kwargs, tangent)
        if node.op == "call_function":
            if (
                node.target in RELUS
                and len(args) == 1
                and isinstance(args[0], Jet)
                and not kwargs.get("inplace")
            ):
                return relu_jet(args[0])
            if (
                node.target in ADDS
                and len(args) == 2
                and not kwargs
                and all(isinstance(a, Jet) for a in args)
            ):
                a, b = args
                return Jet(a.value + b.value, _plus(a.d1, b.d1), _plus(a.d2, b.d2))
            return lifted(node.target, args, kwargs)
        if node.op == "call_method":
            return lifted(lambda obj, *a, **k: getattr(obj, node.target)(*a, **k), args, kwargs)
        raise NoTaylor(f"node {node.op} {node.target}")

    def output(self, inputs: tuple, kwargs: dict, tangent: dict):
        """The model's output on `inputs` as jets (a Jet, or its structure of them)."""
        env: dict[fx.Node, object] = {}
        placeholders = iter(inputs)
        for node in self.graph.graph.nodes:
            if node.op == "placeholder":
                default = node.args[0] if node.args else None  # a forward argument's default
                env[node] = kwargs[node.target] if node.target in kwargs else next(placeholders, default)
                continue
            args, kw = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
            if node.op == "output":
                return args[0]
            env[node] = self._node(node, args, kw, tangent)
            if self._in_place(node) and node.args and isinstance(node.args[0], fx.Node):
                env[node.args[0]] = env[node]  # later readers of the input see it changed, as in eager
        raise NoTaylor("the graph has no output")

    def _in_place(self, node: fx.Node) -> bool:
        """Whether the node changes its first input in place (an inplace=True ReLU, x += y, x.add_(y)):
        the jets are new tensors, so the input's later readers must be given the result."""
        if node.op == "call_module":
            return bool(getattr(self.model.get_submodule(node.target), "inplace", False))
        if node.op == "call_function":
            return bool(node.kwargs.get("inplace")) or node.target in IN_PLACE_OPERATORS
        return node.op == "call_method" and node.target.endswith("_") and not node.target.endswith("__")
