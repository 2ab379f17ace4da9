"""Curvature along a path: uᵀH(θ(x))u exactly, and the Hessian's top eigenvalues and trace.

Along θ(x) = (1 − x)·θ_start + x·θ_end the loss L(x) has the derivatives
    L'(x) = ∇L(θ(x))·u,   L''(x) = uᵀ H(θ(x)) u,   u = θ_end − θ_start,
so the directional curvature is the second derivative of the very loss the sweep plots, in
the same units. One pass over the data gives L, L' and L'' exactly, batch by batch, by the
first of three methods that agrees with the last on the first batch (`choose_method`): the Taylor
pass (taylor.py: jets through the model's torch.fx graph, the cheapest), forward-mode
differentiation twice along u (torch.func.jvp of a jvp through functional_call), or forward over
reverse. Batch by batch over the evaluation data with the sweep's weighting (the summed loss of each
batch over the number of units: examples, or tokens for a causal LM).

What moves along the path (`moving`):
  path     every floating entry the sweep interpolates, BatchNorm's running statistics
           included (they enter the eval-mode BatchNorm as tensors, here through its formula
           (x − μ)/√(σ² + ε)·γ + β so that they can carry a derivative): L'' is then exactly the
           second derivative of the sweep's curve, the finite differences of its loss.
  weights  the trained parameters only, the statistics held at θ(x)'s values: uᵀHu with H the
           Hessian over the weights, as PyHessian and the eigenvalues below define it. The only
           choice under bn="recompute" (the statistics are re-estimated at each x, not a line).
Without BatchNorm the two are the same number.

At a chosen x, `spectrum` (the k largest eigenvalues of H over the weights, Lanczos with its
residual norms) and `trace` (Hutch++ with its standard error) use Hessian-vector products by
forward-over-reverse (jvp of grad), see spectrum.py. Everything runs in the model's dtype
without autocast: second derivatives in bf16 would be rounding. Tied tensors (a language
model's embedding and output layer) are one variable, as in the model.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from linpath.data.stream import shard
from linpath.engine.bn_stats import check_bn_policy, recompute_bn_statistics
from linpath.engine.interpolate import assign_interpolation, check_compatible
from linpath.engine.lazy_states import StateMix, alias_groups, model_targets
from linpath.engine.outputs import to_logits
from linpath.engine.spectrum import DEFAULT_MATVECS, Spectrum, TraceEstimate, hutchpp, lanczos
from linpath.engine.taylor import Jet, NoTaylor, TaylorPass, lifted
from linpath.errors import LinpathError

MOVING = ("path", "weights")
METHODS = ("taylor", "forward", "reverse")

# one batch: (positional inputs, keyword inputs, targets)
Batch = tuple[tuple, dict, torch.Tensor]
# (model output, targets) -> (the batch's summed loss, its number of units of the mean)
BatchLoss = Callable[[object, torch.Tensor], tuple[torch.Tensor, torch.Tensor | float]]


@dataclass
class CurvaturePoint:
    """One x: the loss, its slope dL/dx and its curvature d²L/dx² = uᵀHu (loss units)."""

    x: float
    loss: float
    slope: float
    curvature: float
    units: float  # what the mean is over: examples, or tokens for a causal LM


def _batch_norm(
    inputs, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Eval-mode batch_norm written out, so that its running statistics may carry a derivative
    (torch's refuses one with respect to them)."""
    shape = (1, -1) + (1,) * (inputs.dim() - 2)
    out = (inputs - running_mean.view(shape)) * torch.rsqrt(running_var.view(shape) + eps)
    if weight is not None:
        out = out * weight.view(shape)
    return out + bias.view(shape) if bias is not None else out


def _layer_norm(inputs, normalized_shape, weight=None, bias=None, eps=1e-5):
    """layer_norm written out: torch's forward derivative of a forward derivative through it is
    wrong (its formula reuses the saved mean and deviation), this one is exact."""
    dims = tuple(range(-len(normalized_shape), 0))
    mean = inputs.mean(dims, keepdim=True)
    var = (inputs - mean).square().mean(dims, keepdim=True)
    out = (inputs - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        out = out * weight
    return out + bias if bias is not None else out


class _Differentiable(TorchFunctionMode):
    """Routes eval-mode batch_norm and layer_norm to the formulas above (module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.layer_norm:
            return _layer_norm(*args, **kwargs)
        if func is F.batch_norm:
            bound = inspect.signature(_batch_norm).bind(*args, **kwargs).arguments
            if not bound.get("training", False) and bound.get("running_mean") is not None:
                return _batch_norm(*args, **kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def differentiable():
    """Within the block, eval-mode batch_norm and layer_norm are computed by their formulas, and
    attention by the math kernel of scaled_dot_product_attention (the fused kernels have no
    forward derivative), so that second derivatives through them are exact."""
    with _Differentiable(), sdpa_kernel([SDPBackend.MATH]):
        yield


class Objective:
    """The mean loss of `model` as a function of some of its tensors, batch by batch: Σ over
    batches of batch_loss's sum, over Σ of its units. `batches()` yields the data anew each call."""

    def __init__(self, model: nn.Module, batches: Callable[[], Iterable[Batch]], batch_loss: BatchLoss):
        self.model, self.batches, self.batch_loss = model, batches, batch_loss
        targets = model_targets(model)
        self.groups = {g[0]: g for g in alias_groups(targets)}  # one variable per tied group
        self.targets = targets
        self._taylor: TaylorPass | None | bool = False  # traced on first use (None: untraceable)

    def taylor(self) -> TaylorPass | None:
        """The model's Taylor pass (taylor.py), None where torch.fx cannot trace it."""
        if self._taylor is False:
            self._taylor = TaylorPass.build(self.model)
        return self._taylor

    def _taylor_terms(self, tangent: dict, batch: Batch) -> torch.Tensor:
        """terms() by the Taylor pass: every name of a tied group moves with its variable."""
        taylor = self.taylor()
        if taylor is None:
            raise NoTaylor("torch.fx cannot trace the model")
        names = {alias: u for k, u in tangent.items() for alias in self.groups.get(k, [k])}
        args, kwargs, target = batch
        with torch.no_grad():
            out = taylor.output(args, kwargs, names)
            jet = lifted(lambda o: self.batch_loss(o, target)[0], (out,), {})
            units = self.batch_loss(tree_map(lambda j: j.value if isinstance(j, Jet) else j, out), target)[1]
        parts = (
            jet.value,
            jet.d1 if jet.d1 is not None else 0.0,
            jet.d2 if jet.d2 is not None else 0.0,
            units,
        )
        return torch.tensor([float(v) for v in parts], dtype=torch.float64)

    def _loss(self, variables: dict, batch: Batch):
        args, kwargs, target = batch
        state = dict(self.targets)
        for key, value in variables.items():
            state.update(dict.fromkeys(self.groups.get(key, [key]), value))
        out = functional_call(self.model, state, args, kwargs)
        return self.batch_loss(out, target)

    def terms(self, primals: dict, tangent: dict, batch: Batch, method: str) -> torch.Tensor:
        """One batch's summed loss, its first and second derivatives along `tangent`, its units
        (float64): by the Taylor pass ("taylor"), forward mode twice ("forward") or forward over
        reverse ("reverse")."""
        if method == "taylor":
            return self._taylor_terms(tangent, batch)
        f = lambda q: self._loss(q, batch)  # noqa: E731
        if method == "forward":

            def first(p):
                value, slope, units = jvp(f, (p,), (tangent,), has_aux=True)
                return slope, (value, units)

            slope, curvature, (value, units) = jvp(first, (primals,), (tangent,), has_aux=True)
        else:
            gradient = grad(lambda q: (f(q)[0], f(q)), has_aux=True)
            g, hv, (value, units) = jvp(gradient, (primals,), (tangent,), has_aux=True)
            slope = sum((g[k] * tangent[k]).sum() for k in tangent)
            curvature = sum((hv[k] * tangent[k]).sum() for k in tangent)
        return torch.tensor([float(v) for v in (value, slope, curvature, units)], dtype=torch.float64)

    def directional(self, tangent: dict[str, torch.Tensor], method: str = "forward") -> tuple[float, ...]:
        """(L, L', L'', units) at the model's current tensors along `tangent` (keys: variables)."""
        if method not in METHODS:
            raise LinpathError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
        primals = {k: self.targets[k] for k in tangent}
        sums = torch.zeros(4, dtype=torch.float64)  # L, L', L'', units
        with differentiable():
            for batch in self.batches():
                sums += self.terms(primals, tangent, batch, method)
        if sums[3] == 0:
            raise LinpathError("the evaluation data is empty")
        loss, slope, curvature = (sums[:3] / sums[3]).tolist()
        return loss, slope, curvature, float(sums[3])

    def agrees(self, tangent: dict[str, torch.Tensor], method: str, tolerance: float = 1e-4) -> bool:
        """Whether `method` gives forward-over-reverse's L' and L'' on the first batch: an op whose
        forward derivative is not itself differentiable exactly would make them differ, and a
        model the Taylor pass cannot carry has none."""
        batch = next(iter(self.batches()), None)
        if batch is None:
            return True
        primals = {k: self.targets[k] for k in tangent}
        with differentiable():
            try:
                a = self.terms(primals, tangent, batch, method)
            except Exception:  # the Taylor pass on a model it cannot carry  # noqa: BLE001
                if method != "taylor":
                    raise
                return False
            b = self.terms(primals, tangent, batch, "reverse")
        close = (a[1:3] - b[1:3]).abs() <= tolerance * torch.maximum(a[1:3].abs(), b[1:3].abs()) + 1e-12
        return bool(close.all())

    def _loss_units(self, batch: Batch) -> float:
        with torch.no_grad():
            _, units = self._loss({}, batch)
        return float(units)

    def hvp(self, keys: list[str]) -> Callable[[dict], dict]:
        """v ↦ H·v over the variables `keys` at the model's current tensors (forward-over-reverse),
        H the Hessian of the mean loss; the other tensors are held."""
        primals = {k: self.targets[k] for k in keys}
        units = sum(self._loss_units(b) for b in self.batches())

        def product(v: dict) -> dict:
            total = {k: torch.zeros_like(p) for k, p in primals.items()}
            with differentiable():
                for batch in self.batches():
                    g = grad(lambda p, batch=batch: self._loss(p, batch)[0])
                    _, hv = jvp(g, (primals,), (v,))
                    for k in total:
                        total[k] += hv[k].detach()
            return {k: t / units for k, t in total.items()}

        return product


def flat_operator(product: Callable[[dict], dict], like: dict) -> tuple[Callable, int]:
    """A dict-of-tensors operator as one on flat float64 vectors (for spectrum.py), and its dimension."""
    keys = list(like)
    sizes = [like[k].numel() for k in keys]

    def matvec(v: torch.Tensor) -> torch.Tensor:
        parts = torch.split(v, sizes)
        d = {k: p.view(like[k].shape).to(like[k].dtype).to(like[k].device) for k, p in zip(keys, parts)}
        out = product(d)
        return torch.cat([out[k].reshape(-1).double().cpu() for k in keys])

    return matvec, sum(sizes)


def engine_objective(engine, limit: int | None = None) -> Objective:
    """The objective a PathEvaluator scores: its model (unfolded), its evaluation set (the first
    `limit` examples when given) in its batches, the summed loss of its score over the examples."""
    hi = None if limit is None else min(int(limit), len(engine.labels))

    def batches():
        return (((inputs,), {}, labels) for inputs, labels in engine.batches(0, hi))

    def batch_loss(out, labels):
        logits = to_logits(out, engine.output_fn)
        logits = (
            logits if logits.dtype == torch.float64 else logits.float()
        )  # as the Tally scores, float64 kept
        return engine.score(logits, labels)[0], torch.tensor(float(len(labels)))

    return Objective(engine.model, batches, batch_loss)


def stream_objective(evaluator) -> Objective:
    """The objective a StreamedEvaluator scores: its task's summed unit losses over the units'
    counts (tokens for a causal LM), on this rank's share of the stream, masks passed as it does."""
    try:
        takes_mask = "attention_mask" in inspect.signature(evaluator.model.forward).parameters
    except (TypeError, ValueError):
        takes_mask = False

    def batches():
        for b in shard(evaluator.stream.batches(), *evaluator.shard):
            b = b.to(evaluator.device)
            kwargs = {"attention_mask": b.mask} if b.mask is not None and takes_mask else {}
            yield (b.inputs,), kwargs, b.targets

    def batch_loss(out, targets):
        units = evaluator.task.units(to_logits(out, evaluator.output_fn), targets)
        return units.loss.sum(), units.count.sum()

    return Objective(evaluator.model, batches, batch_loss)


def moving_keys(model: nn.Module, moving: str, tangent_keys: Iterable[str]) -> list[str]:
    """The variables that move: every floating entry ("path") or the parameters ("weights"),
    one name per tied group."""
    if moving not in MOVING:
        raise LinpathError(f"unknown moving set {moving!r} (known: {', '.join(MOVING)})")
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return [k for k in tangent_keys if moving == "path" or k in params]


def choose_method(objective: Objective, tangent: dict, method: str) -> str:
    """ "auto": the Taylor pass (the cheapest), else forward mode twice, whichever first agrees
    with forward over reverse on the first batch at the first point; else forward over reverse,
    with a warning."""
    if method != "auto":
        return method
    for cheaper in ("taylor", "forward"):
        if objective.agrees(tangent, cheaper):
            return cheaper
    warnings.warn(
        "the model has an operation whose second forward derivative is not exact: the curvature "
        "uses forward-over-reverse products instead (about twice the cost)",
        RuntimeWarning,
        stacklevel=3,
    )
    return "reverse"


def lazy_direction(mix: StateMix) -> dict[str, torch.Tensor]:
    """u = states[1] − states[0] of a two-state StateMix, on the model's device in its dtypes,
    read a tensor at a time (one model-sized tensor set in memory, besides the model)."""
    if len(mix.states) != 2:
        raise LinpathError(f"a path has two states, the mix has {len(mix.states)}")
    out = {}
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(s.reader(mix.device)) for s in mix.states]
        for key, sources in mix.plan:
            target = mix.targets[key]
            if target.is_floating_point():
                a, b = (r.get(src).to(target.device, torch.float64) for r, src in zip(readers, sources))
                out[key] = (b - a).to(target.dtype)
    return out


def streamed_points(evaluator, mix: StateMix, xs, moving: str = "path", method: str = "auto"):
    """L, dL/dx and d²L/dx² at each x of a StreamedEvaluator's path (a language model's: the
    causal-LM loss per token), θ(x) written by `mix` as the streamed sweep writes it."""
    objective = stream_objective(evaluator)
    direction = lazy_direction(mix)
    tangent = {k: direction[k] for k in moving_keys(evaluator.model, moving, direction)}
    out = []
    for x in xs:
        mix.write((1.0 - float(x), float(x)))
        method = choose_method(objective, tangent, method)
        loss, slope, curvature, units = objective.directional(tangent, method)
        out.append(CurvaturePoint(float(x), loss, slope, curvature, units))
    return out


class PathCurvature:
    """Curvature along θ(x) = (1 − x)·start + x·end on a PathEvaluator's model and data.

    `bn` and `bn_batches` are the path's BatchNorm policy as the sweep's (under recompute the
    statistics are re-estimated at each x and held: moving="weights"); `moving` is "path" (the
    default under interpolate) or "weights" (module docstring); `limit` evaluates the first
    `limit` examples of the engine's set only (a stated subset for the spectra)."""

    def __init__(
        self,
        engine,
        start: dict,
        end: dict,
        bn="interpolate",
        bn_batches=None,
        moving=None,
        limit=None,
        method="auto",
    ):
        check_bn_policy(bn)
        check_compatible(start, end)
        check_compatible(engine.targets, start, "the model", "the checkpoint")
        moving = moving or ("weights" if bn == "recompute" else "path")
        if bn == "recompute" and moving == "path":
            raise LinpathError(
                "under bn='recompute' the statistics are re-estimated at each x: use moving='weights'"
            )
        self.engine, self.bn, self.bn_batches = engine, bn, bn_batches
        self.start, self.end = engine.like_targets(start), engine.like_targets(end)
        self.objective = engine_objective(engine, limit)
        floats = [k for k in self.objective.groups if engine.targets[k].is_floating_point()]
        self.keys = moving_keys(engine.model, moving, floats)
        self.tangent = {k: self.end[k] - self.start[k] for k in self.keys}
        self.moving, self.method = moving, method
        self.subset: set[str] | None = None  # the spectra's parameters when `keys` is not given

    def _at(self, x: float) -> None:
        assign_interpolation(self.engine.targets, self.start, self.end, float(x))
        if self.bn == "recompute":
            recompute_bn_statistics(self.engine.model, self.bn_batches, "fp32")

    def points(self, xs) -> list[CurvaturePoint]:
        """L, dL/dx and d²L/dx² at each x (one pass over the data per x)."""
        out = []
        for x in xs:
            self._at(x)
            self.method = choose_method(self.objective, self.tangent, self.method)
            loss, slope, curvature, units = self.objective.directional(self.tangent, self.method)
            out.append(CurvaturePoint(float(x), loss, slope, curvature, units))
        return out

    def _operator(self, x: float, keys: set[str] | None):
        self._at(x)
        keys = self.subset if keys is None else keys
        names = moving_keys(self.engine.model, "weights", self.objective.groups)
        names = [k for k in names if keys is None or k in keys]
        if not names:
            raise LinpathError("no parameter is selected for the Hessian")
        return flat_operator(self.objective.hvp(names), {k: self.engine.targets[k] for k in names})

    def spectrum(self, x: float, k: int = 5, steps: int | None = None, seed: int = 0, keys=None) -> Spectrum:
        """The k largest eigenvalues of the Hessian over the weights (or `keys`) at θ(x)."""
        matvec, dim = self._operator(x, keys)
        with torch.enable_grad():
            return lanczos(matvec, dim, k, steps, seed)

    def trace(
        self, x: float, matvecs: int = DEFAULT_MATVECS, seed: int = 0, keys=None, sketch: bool = True
    ) -> TraceEstimate:
        """The trace of the Hessian over the weights (or `keys`) at θ(x), with its standard error."""
        matvec, dim = self._operator(x, keys)
        with torch.enable_grad():
            return hutchpp(matvec, dim, matvecs, seed, sketch)
