"""The evaluation engine: many interpolated networks, the data preloaded once.

Per point x the engine writes θ(x) into one resident model in place (no load_state_dict, no
DataLoader) and streams the preloaded evaluation tensor through it in large batches; convnets
run channels-last, and `precision="bf16"` runs under bf16 autocast.

Linear stem: when the model's first layer is a Linear or a convolution applied to the network's
input (found by tracing one forward pass, stem.py, or named by the model as `linear_stem`),
its output is linear in its parameters, so stem_{θ(x)}(input) = (1 - x)·stem_{θ_start}
+ x·stem_{θ_end} exactly (up to rounding): the endpoints' stem outputs are computed once per
path and mixed per point. By default ("auto") this is done when the stem is at least STEM_SHARE
of the multiply-adds (LeNet's 88 %, not a convnet's 1 %). BatchNorm folding (bnfold.py) and the
BatchNorm policies (bn_stats.py) are applied per point. Details: docs/engine.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from linpath.engine.bn_stats import bn_modules, check_bn_policy, recompute_bn_statistics
from linpath.engine.bnfold import Folding, conv_bn_pairs
from linpath.engine.interpolate import assign_interpolation, check_compatible
from linpath.engine.mixing import evaluate_mixed, get_submodule, stem_outputs
from linpath.engine.outputs import OutputFn, to_logits
from linpath.engine.profile import stem_profile
from linpath.engine.scoring import Result, classification_score, make_tally
from linpath.engine.stem import find_linear_stem
from linpath.runtime.device import autocast, check_precision
from linpath.runtime.gpu_batch import cuda_batch
from linpath.runtime.threads import for_model

STEM_SHARE = 0.1  # use the linear stem ("auto") when it is at least this share of the multiply-adds


# the smallest default evaluation batch of a convnet on a GPU: small batches leave it waiting on kernel
# launches, so the default is the whole set, or as much of it as a quarter of the free memory holds
# (runtime/gpu_batch.py), and at least this
CUDA_CONV_BATCH = 1024
# a fully connected net on a CPU: a batch's activations (2,000 × LeNet's 300 floats, 2.4 MB) stay in
# cache between the stem mix, the ReLU and the next product; 20 % faster than one 10,000-row batch
# on the 2-core AVX2 CPU (benchmarks/README.md) and bitwise the same losses and errors
CPU_DENSE_BATCH = 2000
GPU_DENSE_BATCH = 10000


@dataclass(frozen=True)
class Layout:
    """How the engine lays out its work, for tests and benchmarks to override: `use_stem` is
    "auto", True (whenever the model has a stem) or False; `stem_memory` bounds the bytes of
    mixed stem outputs held at once; `channels_last` None for convnets' default; `fold_bn`
    folds eval-mode BatchNorm into the preceding convolutions where that is exact."""

    use_stem: bool | str = "auto"
    stem_memory: int = 1 << 30
    channels_last: bool | None = None
    fold_bn: bool = True


class PathEvaluator:
    """Evaluates θ(x) for many x on one preloaded evaluation set.

    Parameters: `model` is any module whose state dict matches the states to interpolate (it
    is overwritten in place); `evalset` has `.inputs` and `.labels` on the evaluation device;
    `batch_size` None picks 256 for convnets on the CPU (cache-sized, fastest there), on CUDA
    the whole set or as much as a quarter of the free memory holds, at least 1,024 (fewer kernel
    launches per network: runtime/gpu_batch.py), and for the rest 2,000 on the CPU
    (cache-sized) and 10,000 on CUDA; `population` holds the split's examples per class when
    `evalset` is a subset of it; `output_fn` maps the model's output to what `score` takes
    (default: engine.outputs.default_logits); `layout` (Layout) the stem, memory layout and
    BatchNorm folding, each on by default where it pays (see the module's docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        evalset,
        batch_size: int | None = None,
        precision: str = "fp32",
        score=classification_score,
        population: torch.Tensor | None = None,
        output_fn: OutputFn | None = None,
        compile: bool = False,
        layout: Layout | None = None,
    ):
        layout = layout or Layout()
        use_stem, channels_last = layout.use_stem, layout.channels_last
        check_precision(precision)
        self.output_fn = output_fn
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
        self.batch_size = batch_size or self._default_batch(convnet)
        self.precision = precision
        self.score = score
        self.population = population
        self.stem_memory = layout.stem_memory
        self.targets = {
            k: (v.data if isinstance(v, nn.Parameter) else v)
            for k, v in self.model.state_dict(keep_vars=True).items()
        }
        self.stem_name = self._find_stem(model) if use_stem and len(self.labels) else None
        self._end_stem: tuple[dict, list] | None = None  # whole_stem's last state and outputs
        self.stem_share, self.stem_numel = 0.0, 0
        if self.stem_name and len(self.labels):
            stem = get_submodule(self.model, self.stem_name)
            self.stem_share, self.stem_numel = stem_profile(self.model, self.inputs[:1], stem)
            if use_stem == "auto" and self.stem_share < STEM_SHARE:
                self.stem_name = None
        self.folding: Folding | None = None
        if layout.fold_bn and len(self.labels) and bn_modules(self.model):
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

    def _default_batch(self, convnet: bool) -> int:
        if self.device.type == "cuda":
            return cuda_batch(self.model, self.inputs, CUDA_CONV_BATCH) if convnet else GPU_DENSE_BATCH
        return 256 if convnet else CPU_DENSE_BATCH

    def _find_stem(self, model: nn.Module) -> str | None:
        """The stem the model names (`linear_stem`, an override; None turns mixing off), else
        the one found by tracing a forward pass (stem.py), else None."""
        if hasattr(model, "linear_stem"):
            return model.linear_stem
        return find_linear_stem(self.model, self.inputs[:2])

    @property
    def folds_bn(self) -> bool:
        """Whether BatchNorm is folded into convolutions for evaluation."""
        return self.folding is not None

    @property
    def net(self) -> nn.Module:
        """The module that evaluates: the folded copy, or the model itself."""
        return self.folding.model if self.folding is not None else self.model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The evaluating module's logits (the one place outputs leave the model); the compiled
        module's when asked for and it works."""
        output = None
        if self._compiled is not None:
            try:
                output = self._compiled(inputs)
            except Exception as e:  # no compiler, an unsupported op: evaluate eagerly instead
                warnings.warn(
                    f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); evaluating eagerly",
                    stacklevel=2,
                )
                self._compiled = None
        if output is None:
            output = self.net(inputs)
        return to_logits(output, self.output_fn)

    def fold(self) -> None:
        if self.folding is not None:
            self.folding.apply()

    @property
    def uses_stem(self) -> bool:
        return self.stem_name is not None

    def like_targets(self, state: dict) -> dict:
        """The state on the device, each tensor laid out like the model's (channels-last
        included), so that interpolation writes in place with matching strides."""
        out = {}
        for k, v in state.items():
            target = self.targets[k]
            out[k] = torch.empty_like(target).copy_(v) if target.is_floating_point() else v.to(self.device)
        return out

    @torch.no_grad()
    def evaluate_current(self) -> Result:
        """The result of the state now in `targets` (BatchNorm refolded first), for callers that
        write states of their own, such as planes (plane.py)."""
        self.fold()
        tally = make_tally(self.labels, self.population)
        for inputs, labels in self.batches():
            with autocast(self.device, self.precision):
                outputs = self.forward(inputs)
            tally.add(outputs, labels, self.score)
        return tally.result()

    def whole_stem(self, state: dict) -> list[torch.Tensor]:
        """The stem's outputs under `state` on all examples, reused from the previous call when
        the state's stem entries are equal to that call's: a sweep's paths of one replicate share
        their end (the final state), whose stem outputs are then computed once, not per path."""
        keys = [k for k in self.targets if k.startswith(self.stem_name + ".")]
        cached = self._end_stem
        if cached is not None and all(torch.equal(cached[0][k], state[k]) for k in keys):
            return cached[1]
        outputs = stem_outputs(self, state, 0, len(self.labels))
        self._end_stem = ({k: state[k].clone() for k in keys}, outputs)
        return outputs

    def batches(self, lo: int = 0, hi: int | None = None):
        hi = len(self.labels) if hi is None else hi
        for i in range(lo, hi, self.batch_size):
            j = min(i + self.batch_size, hi)
            yield self.inputs[i:j], self.labels[i:j]

    @torch.no_grad()
    def evaluate_path(
        self, start: dict, end: dict, xs, bn: str = "interpolate", bn_batches=None
    ) -> list[Result]:
        """Results at each x of θ(x) = (1-x)·start + x·end."""
        return self.path(start, end, bn, bn_batches).evaluate(xs)

    def path(self, start: dict, end: dict, bn: str = "interpolate", bn_batches=None) -> Segment:
        """A path whose evaluate(xs) may be called repeatedly (adaptive grids) while the
        endpoints' stem outputs are computed once."""
        check_bn_policy(bn)
        check_compatible(start, end)
        check_compatible(self.targets, start, "the model", "the checkpoint")
        if bn == "recompute" and bn_batches is not None:
            layout = torch.channels_last if self.channels_last else torch.contiguous_format
            bn_batches = [
                b.to(self.device).contiguous(memory_format=layout) if b.dim() == 4 else b.to(self.device)
                for b in bn_batches
            ]
        return Segment(self, self.like_targets(start), self.like_targets(end), bn, bn_batches)


class Segment:
    """θ(x) = (1 - x)·start + x·end for one (start, end) pair on one engine; see PathEvaluator.path."""

    def __init__(self, engine: PathEvaluator, start: dict, end: dict, bn: str, bn_batches):
        self.e, self.start, self.end, self.bn, self.bn_batches = engine, start, end, bn, bn_batches
        self._stems: tuple[list, list] | None = None  # whole-set stem outputs, when they fit
        self._variances = [
            f"{name}.running_var"
            for name, m in engine.model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and f"{name}.running_var" in engine.targets
        ]
        self._warned = False

    def _set(self, x: float, bn_state: dict | None) -> None:
        assign_interpolation(self.e.targets, self.start, self.end, x)
        if bn_state:
            for k, v in bn_state.items():
                self.e.targets[k].copy_(v)
        elif not 0 <= x <= 1 and not self._warned:
            self._warn_negative_variance(x)

    def _warn_negative_variance(self, x: float) -> None:
        """Past [0, 1] an interpolated running_var can turn negative, and BatchNorm's outputs
        NaN: say so once per path, naming the first such layer, rather than leave a silent NaN."""
        for k in self._variances:
            if bool((self.e.targets[k] < 0).any()):
                self._warned = True
                warnings.warn(
                    f"BatchNorm {k.rpartition('.')[0]!r}: the interpolated running_var is negative at "
                    f"x = {x:g} (extrapolating past [0, 1]), so its outputs there are NaN; "
                    "bn='recompute' (--bn recompute) re-estimates the statistics instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return

    def _recomputed(self, x: float) -> dict | None:
        """θ(x)'s BatchNorm buffers after recompute (None under interpolate)."""
        if self.bn != "recompute":
            return None
        assign_interpolation(self.e.targets, self.start, self.end, x)
        recompute_bn_statistics(self.e.model, self.bn_batches, self.e.precision)
        names = {
            name for name, m in self.e.model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        }
        return {
            k: v.clone()
            for k, v in self.e.targets.items()
            if k.rpartition(".")[0] in names and k.rpartition(".")[2] in ("running_mean", "running_var")
        }

    def evaluate(self, xs) -> list[Result]:
        with for_model(self.e.model):  # a small model on one thread (runtime/threads.py)
            return self._evaluate([float(x) for x in xs])

    @torch.no_grad()
    def _evaluate(self, xs: list[float]) -> list[Result]:
        e = self.e
        if not e.uses_stem:
            return [self._evaluate_point(x) for x in xs]
        bn_states = [self._recomputed(x) for x in xs]  # a full forward each: before the stem is replaced
        return evaluate_mixed(
            e,
            list(zip(xs, bn_states)),
            2,
            self._anchors,
            lambda point: self._set(*point),
            lambda point, outputs: lambda i, h, out: torch.lerp(h[0], h[1], point[0], out=out),
        )

    def _evaluate_point(self, x: float) -> Result:
        self._set(x, None)
        if self.bn == "recompute":
            recompute_bn_statistics(self.e.model, self.bn_batches, self.e.precision)
        return self.e.evaluate_current()

    def _anchors(self, lo: int, hi: int) -> list[tuple]:
        """Per batch of examples lo..hi, the stem's outputs at start and end; for the whole set
        kept across calls, the end's shared with other segments of the same end (whole_stem)."""
        e = self.e
        if (lo, hi) == (0, len(e.labels)):
            if self._stems is None:
                self._stems = list(zip(stem_outputs(e, self.start, lo, hi), e.whole_stem(self.end)))
            return self._stems
        return list(zip(stem_outputs(e, self.start, lo, hi), stem_outputs(e, self.end, lo, hi)))
