"""The evaluation engine: many interpolated networks, the data preloaded once.

Per point x the engine writes θ(x) into one resident model in place (no load_state_dict, no
DataLoader) and streams the preloaded evaluation tensor through it in large batches; convnets
run channels-last (oneDNN's fast layout), and `precision="bf16"` runs under bf16 autocast.

Linear stem: when a model names its first layer as `linear_stem` (its input is the network's
input and its output is linear in its parameters), then
    stem_{θ(x)}(input) = (1 - x)·stem_{θ_start}(input) + x·stem_{θ_end}(input)
exactly (up to rounding), so the two endpoint outputs are computed once per path and mixed per
point. It pays only where the stem is a large share of the work: LeNet-300-100's stem is 88 %
of the multiply-adds, a CIFAR convnet's first 3-channel convolution about 1 % (and mixing its
large output costs as much memory traffic as recomputing it). So by default ("auto") the stem
is used when it is at least STEM_SHARE of the multiply-adds. When the endpoints' stem outputs
for the whole set exceed `stem_memory`, the set is cut into chunks that fit, and for each chunk
every x is evaluated before moving on (so each stem output is still computed once).

BatchNorm policy (recorded in every result row as `bn`):
  interpolate  the running statistics are interpolated with the weights, exactly what loading
               the mixed state dict gives (the paper's setup);
  recompute    at each point the running statistics are reset and re-estimated as a cumulative
               average over N training batches in train mode, then the network is evaluated.
They differ because the interpolated statistics are those of neither network: the
activations of θ(x) have their own mean and variance (typically smaller variance mid-path,
"variance collapse"), so `interpolate` normalizes them with the wrong statistics and
overstates the barrier; `recompute` measures the network θ(x) as it would be deployed.

BatchNorm folding (bnfold.py): in eval mode a convolution followed only by a BatchNorm is one
convolution with rescaled weights; the engine evaluates a folded copy of the model, refolded at
each x. `fold_bn=False` turns it off.

Standard errors: every Result carries the standard error of its loss and error as an
estimate of the whole split's value, stratified by class (see `Tally`); it is 0 when the whole
split is evaluated.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .bnfold import Folding, conv_bn_pairs, set_submodule
from .errors import LinpathError
from .interpolate import assign_interpolation, check_compatible

BN_POLICIES = ("interpolate", "recompute")
STEM_SHARE = 0.1  # use the linear stem ("auto") when it is at least this share of the multiply-adds


def classification_score(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The default score of one batch: (summed cross-entropy, number of top-1 errors).

    A score is any `score(outputs, targets) -> (loss summed over the batch, errors summed over
    the batch)`; the engine divides both by the number of examples. Other tasks (regression,
    language models) pass their own to evaluate_model / PathEvaluator (see api.py).
    """
    return F.cross_entropy(outputs, targets, reduction="sum").double(), (outputs.argmax(1) != targets).sum()


@dataclass
class Result:
    loss: float  # mean cross-entropy
    error: float  # 1 - accuracy
    examples: int
    loss_se: float = 0.0  # standard error as an estimate of the whole split's value
    error_se: float = 0.0


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def class_counts(labels: torch.Tensor) -> torch.Tensor | None:
    """Examples per class of integer labels (None for other targets)."""
    if labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool or len(labels) == 0:
        return None
    return torch.bincount(labels.long()).double()


class Tally:
    """Sums of per-example loss and error by class, kept on the device (no sync per batch).

    The standard error is the stratified one, with the finite-population correction, of the
    subset's mean as an estimate of the whole split's mean: SE² = Σ_c W_c² s_c² / n_c · (1 -
    n_c/N_c), W_c = N_c/N, from the class counts N_c of the split (`population`). With the
    default classification score this is exact per example; a custom score gives only batch
    sums, so its standard errors are NaN.
    """

    def __init__(self, population: torch.Tensor | None, device):
        self.population = population
        classes = len(population) if population is not None else 1
        self.sums = torch.zeros(5, classes, dtype=torch.float64, device=device)  # n, Σl, Σl², Σe, Σe²
        self.per_example = True
        self.loss, self.errors, self.n = 0.0, 0.0, 0

    def add(self, outputs: torch.Tensor, labels: torch.Tensor, score) -> None:
        outputs = outputs.float()
        if score is classification_score and self.population is not None:
            losses = F.cross_entropy(outputs, labels, reduction="none").double()
            wrong = (outputs.argmax(1) != labels).double()
            values = torch.stack([torch.ones_like(losses), losses, losses * losses, wrong, wrong])
            self.sums.index_add_(1, labels, values)
        else:
            loss, errors = score(outputs, labels)
            self.loss += float(loss)
            self.errors += float(errors)
            self.n += len(labels)
            self.per_example = False

    def result(self) -> Result:
        if not self.per_example:
            n = self.n
            exact = self.population is not None and n == int(self.population.sum())
            se = 0.0 if exact else math.nan
            return Result(self.loss / n, self.errors / n, n, se, se)
        s = self.sums.cpu()
        count = s[0]
        n = int(count.sum())
        total = float(self.population.sum())
        ses = []
        for k in (1, 3):
            mean_c = s[k] / count.clamp(min=1)
            var_c = (s[k + 1] - count * mean_c * mean_c) / (count - 1).clamp(min=1)
            var_c = torch.where(count >= 2, var_c.clamp(min=0), torch.zeros_like(var_c))
            w = self.population / total
            fpc = (1 - count / self.population.clamp(min=1)).clamp(min=0)
            terms = torch.where(count > 0, w * w * var_c / count.clamp(min=1) * fpc, torch.zeros_like(var_c))
            ses.append(math.sqrt(float(terms.sum())))
        return Result(float(s[1].sum()) / n, float(s[3].sum()) / n, n, ses[0], ses[1])


def _tally(labels: torch.Tensor, population) -> Tally:
    counts = class_counts(labels)
    if population is None and counts is not None:
        population = counts
    if population is not None and counts is not None and len(counts) > len(population):
        raise LinpathError("the evaluation subset has a class its population does not")
    return Tally(population, labels.device)


@torch.no_grad()
def evaluate_model(model: nn.Module, evalset, batch_size: int = 2000, precision: str = "fp32",
                   score=classification_score, population: torch.Tensor | None = None) -> Result:
    """Mean cross-entropy and error (or another `score`) of `model` (in eval mode) on a preloaded EvalSet."""
    model.eval()
    device = evalset.inputs.device
    tally = _tally(evalset.labels, population)
    for i in range(0, len(evalset.labels), batch_size):
        with autocast(device, precision):
            outputs = model(evalset.inputs[i : i + batch_size])
        tally.add(outputs, evalset.labels[i : i + batch_size], score)
    return tally.result()


class _Given(nn.Module):
    """Stands in for the stem: returns a precomputed output, ignoring its input."""

    def __init__(self):
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, _input):
        return self.value


class _StopForward(Exception):
    pass


def _get_submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise LinpathError(f"model has no module {name!r} (named as its linear stem)") from None


def _bn_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def _profile(model: nn.Module, example: torch.Tensor, stem: nn.Module | None) -> tuple[float, int]:
    """(share of the multiply-adds in the stem, stem output elements per example), from one
    example's forward pass."""
    macs = {}
    stem_numel = [0]

    def count(module, inputs, output):
        if isinstance(module, nn.Linear):
            macs[module] = output.numel() * module.in_features
        elif isinstance(module, nn.modules.conv._ConvNd):
            macs[module] = output.numel() * module.weight[0].numel()
        if module is stem:
            stem_numel[0] = output[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        model.eval()
        model(example)
    finally:
        for h in hooks:
            h.remove()
    total = sum(macs.values())
    in_stem = sum(v for m, v in macs.items() if stem is not None and any(m is s for s in stem.modules()))
    return (in_stem / total if total else 0.0), stem_numel[0]


class PathEvaluator:
    """Evaluates θ(x) for many x on one preloaded evaluation set.

    Parameters: `model` is any module whose state dict matches the states to interpolate (it
    is overwritten in place); `evalset` has `.inputs` and `.labels` on the evaluation device;
    `batch_size` None picks 256 for convnets (cache-sized, fastest on CPU) and 10,000 for the
    rest; `use_stem` is "auto", True (whenever the model names a stem) or False;
    `population` holds the split's examples per class when `evalset` is a subset of it;
    `fold_bn` folds eval-mode BatchNorm into the preceding convolutions where that is exact
    (see the module's docstring).
    """

    def __init__(self, model: nn.Module, evalset, batch_size: int | None = None, precision: str = "fp32",
                 use_stem: bool | str = "auto", stem_memory: int = 1 << 30, score=classification_score,
                 population: torch.Tensor | None = None, channels_last: bool | None = None,
                 fold_bn: bool = True, compile: bool = False):
        if precision not in ("fp32", "bf16"):
            raise LinpathError(f"unknown precision {precision!r} (known: fp32, bf16)")
        self.device = evalset.inputs.device
        self.model = model.to(self.device).eval()
        convnet = any(isinstance(m, nn.Conv2d) for m in model.modules())
        self.channels_last = convnet if channels_last is None else channels_last
        self.inputs, self.labels = evalset.inputs, evalset.labels
        if self.channels_last and self.inputs.dim() == 4:
            self.model.to(memory_format=torch.channels_last)
            self.inputs = self.inputs.contiguous(memory_format=torch.channels_last)
        else:
            self.channels_last = False
        self.batch_size = batch_size or (256 if convnet else 10000)
        self.precision = precision
        self.score = score
        self.population = population
        self.stem_memory = stem_memory
        self.targets = {k: (v.data if isinstance(v, nn.Parameter) else v)
                        for k, v in self.model.state_dict(keep_vars=True).items()}
        self.stem_name = getattr(model, "linear_stem", None) if use_stem else None
        self.stem_share, self.stem_numel = 0.0, 0
        if self.stem_name and len(self.labels):
            stem = _get_submodule(self.model, self.stem_name)
            self.stem_share, self.stem_numel = _profile(self.model, self.inputs[:1], stem)
            if use_stem == "auto" and self.stem_share < STEM_SHARE:
                self.stem_name = None
        self.folding: Folding | None = None
        if fold_bn and len(self.labels) and _bn_modules(self.model):
            pairs = conv_bn_pairs(self.model, self.stem_name)
            if pairs:
                try:
                    folding = Folding(self.model, pairs)
                except Exception:
                    folding = None
                if folding is not None and folding.check(self.model, self.targets, self.inputs[:8]):
                    self.folding = folding
        # torch.compile treats parameters and buffers as inputs, so writing θ(x) in place needs
        # no recompilation; it is not used with the mixed stem (LeNet), whose tail is tiny.
        self._compiled = torch.compile(self.net, dynamic=False) if compile and not self.stem_name else None

    @property
    def folds_bn(self) -> bool:
        """Whether BatchNorm is folded into convolutions for evaluation."""
        return self.folding is not None

    @property
    def net(self) -> nn.Module:
        """The module that evaluates: the folded copy, or the model itself."""
        return self.folding.model if self.folding is not None else self.model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The evaluating module's output; the compiled one when asked for and it works."""
        if self._compiled is not None:
            try:
                return self._compiled(inputs)
            except Exception as e:  # no compiler, an unsupported op: evaluate eagerly instead
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); evaluating eagerly")
                self._compiled = None
        return self.net(inputs)

    def _fold(self) -> None:
        if self.folding is not None:
            self.folding.apply()

    @property
    def uses_stem(self) -> bool:
        return self.stem_name is not None

    def _like_targets(self, state: dict) -> dict:
        """The state on the device, each tensor laid out like the model's (channels-last
        included), so that interpolation writes in place with matching strides."""
        out = {}
        for k, v in state.items():
            target = self.targets[k]
            out[k] = torch.empty_like(target).copy_(v) if target.is_floating_point() else v.to(self.device)
        return out

    def _batches(self, lo: int = 0, hi: int | None = None):
        hi = len(self.labels) if hi is None else hi
        for i in range(lo, hi, self.batch_size):
            j = min(i + self.batch_size, hi)
            yield self.inputs[i:j], self.labels[i:j]

    @torch.no_grad()
    def evaluate_path(self, start: dict, end: dict, xs, bn: str = "interpolate", bn_batches=None) -> list[Result]:
        """Results at each x of θ(x) = (1-x)·start + x·end."""
        return self.path(start, end, bn, bn_batches).evaluate(xs)

    def path(self, start: dict, end: dict, bn: str = "interpolate", bn_batches=None) -> "Path":
        """A path whose evaluate(xs) may be called repeatedly (adaptive grids) while the
        endpoints' stem outputs are computed once."""
        if bn not in BN_POLICIES:
            raise LinpathError(f"unknown BatchNorm policy {bn!r} (known: {', '.join(BN_POLICIES)})")
        check_compatible(start, end)
        check_compatible(self.targets, start, "the model", "the checkpoint")
        if bn == "recompute" and bn_batches is not None:
            layout = torch.channels_last if self.channels_last else torch.contiguous_format
            bn_batches = [b.to(self.device).contiguous(memory_format=layout) if b.dim() == 4 else b.to(self.device)
                          for b in bn_batches]
        return Path(self, self._like_targets(start), self._like_targets(end), bn, bn_batches)


class Path:
    """One (start, end) pair on one engine; see PathEvaluator.path."""

    def __init__(self, engine: PathEvaluator, start: dict, end: dict, bn: str, bn_batches):
        self.e, self.start, self.end, self.bn, self.bn_batches = engine, start, end, bn, bn_batches
        self._stems: tuple[list, list] | None = None  # whole-set stem outputs, when they fit

    def _set(self, x: float, bn_state: dict | None) -> None:
        assign_interpolation(self.e.targets, self.start, self.end, x)
        if bn_state:
            for k, v in bn_state.items():
                self.e.targets[k].copy_(v)

    def _recomputed(self, x: float) -> dict | None:
        """θ(x)'s BatchNorm buffers after recompute (None under interpolate)."""
        if self.bn != "recompute":
            return None
        assign_interpolation(self.e.targets, self.start, self.end, x)
        recompute_bn_statistics(self.e.model, self.bn_batches, self.e.precision)
        names = {name for name, m in self.e.model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        return {k: v.clone() for k, v in self.e.targets.items()
                if k.rpartition(".")[0] in names and k.rpartition(".")[2] in ("running_mean", "running_var")}

    @torch.no_grad()
    def evaluate(self, xs) -> list[Result]:
        xs = [float(x) for x in xs]
        e = self.e
        if not e.uses_stem:
            results = []
            for x in xs:
                self._set(x, None)
                if self.bn == "recompute":
                    recompute_bn_statistics(e.model, self.bn_batches, e.precision)
                e._fold()
                tally = _tally(e.labels, e.population)
                for inputs, labels in e._batches():
                    with autocast(e.device, e.precision):
                        outputs = e.forward(inputs)
                    tally.add(outputs, labels, e.score)
                results.append(tally.result())
            return results
        bn_states = [self._recomputed(x) for x in xs]
        tallies = [_tally(e.labels, e.population) for _ in xs]
        n = len(e.labels)
        per_chunk = max(e.batch_size, e.stem_memory // max(1, 2 * 4 * e.stem_numel) // e.batch_size * e.batch_size)
        stem = _get_submodule(e.model, e.stem_name)
        net = e.net
        net_stem = _get_submodule(net, e.stem_name)
        for lo in range(0, n, per_chunk):
            hi = min(n, lo + per_chunk)
            if per_chunk >= n and self._stems is not None:
                h_start, h_end = self._stems
            else:
                h_start, h_end = self._stem_outputs(stem, self.start, lo, hi), self._stem_outputs(stem, self.end, lo, hi)
                if per_chunk >= n:
                    self._stems = (h_start, h_end)
            given = _Given()
            set_submodule(net, e.stem_name, given)
            try:
                for x, bn_state, tally in zip(xs, bn_states, tallies):
                    self._set(x, bn_state)
                    e._fold()
                    for (inputs, labels), a, b in zip(e._batches(lo, hi), h_start, h_end):
                        given.value = torch.lerp(a, b, x)
                        with autocast(e.device, e.precision):
                            outputs = net(inputs)
                        tally.add(outputs, labels, e.score)
            finally:
                set_submodule(net, e.stem_name, net_stem)
        return [t.result() for t in tallies]

    @torch.no_grad()
    def _stem_outputs(self, stem: nn.Module, state: dict, lo: int, hi: int) -> list[torch.Tensor]:
        """The stem's output under `state` for each batch of examples lo..hi (the forward
        pass is cut short right after the stem)."""
        prefix = self.e.stem_name + "."
        for k, target in self.e.targets.items():
            if k.startswith(prefix):
                target.copy_(state[k])
        captured = []

        def capture_and_stop(module, inputs, output):
            captured.append(output.float())
            raise _StopForward

        hook = stem.register_forward_hook(capture_and_stop)
        try:
            for inputs, _ in self.e._batches(lo, hi):
                with contextlib.suppress(_StopForward), autocast(self.e.device, self.e.precision):
                    self.e.model(inputs)
        finally:
            hook.remove()
        return captured


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches, precision: str = "fp32") -> None:
    """Reset BatchNorm running statistics and re-estimate them as a cumulative average over
    `batches` (a list of input tensors) in train mode; leaves the model in eval mode."""
    bns = _bn_modules(model)
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


def stratified_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of a fixed, class-stratified subset of n examples (sorted).

    Each class gets n·N_c/N examples, rounded by largest remainder so they sum to n; within a
    class the examples are the first of a permutation that is a pure function of the seed, so
    a subset of n is the same on every run and machine."""
    if not isinstance(n, int) or n <= 0:
        raise LinpathError(f"--eval-examples must be a positive integer, got {n}")
    total = len(labels)
    if n >= total:
        return torch.arange(total)
    labels = labels.cpu().long()
    counts = torch.bincount(labels)
    quota = counts.double() * n / total
    take = quota.floor().long()
    order = torch.argsort(-(quota - take), stable=True)
    take[order[: n - int(take.sum())]] += 1
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(total, generator=g)
    chosen = []
    for c in range(len(counts)):
        members = perm[labels[perm] == c]
        chosen.append(members[: int(take[c])])
    return torch.sort(torch.cat(chosen)).values
