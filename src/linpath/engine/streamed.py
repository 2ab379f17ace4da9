"""The streamed path evaluator: θ(x) written into one resident model, the data streamed through.

The preloaded engine (evaluator.py) holds the evaluation split as one tensor on the device and
scores classifiers. This one reads a Stream (data/stream.py) batch by batch at every point, so
the data never needs to fit in memory, and scores any Task (tasks.py: classification, causal
language models, a user's loss_fn). States are written by a StateMix (lazy_states.py), so they
may stay on disk as model folders.

Per point it keeps twelve sums over units (examples, or sequences for a language model): their
count, Σ loss, Σ errors, Σ targets, Σ bytes, their squares and cross products. The loss is
Σ loss / Σ targets and its standard error the ratio estimator's over units,
SE² = Σ_u (loss_u - R·count_u)² / (n (n - 1)) / mean(count)², with the finite-population
correction 1 - n/N where the stream's size N is known (so it is 0 when every example was read,
as the preloaded engine's is). The SE treats the units read as a simple random sample of the
stream: with se_target, shuffle the data once beforehand. Under torchrun each rank reads every
size-th batch and the sums are added over ranks (all_reduce); with se_target the ranks advance
a batch at a time together and stop together once the loss's SE is at most se_target (after at
least min_examples units), recording how many units each point used.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from linpath.data.stream import Batch, ShareCache, Stream
from linpath.engine.choices import MIN_EXAMPLES
from linpath.engine.lazy_states import StateMix
from linpath.engine.outputs import OutputFn, to_logits
from linpath.engine.tasks import Task, Units
from linpath.errors import LinpathError
from linpath.runtime.device import autocast, check_precision

MOMENTS = (
    "n", "loss", "errors", "count", "bytes", "no_bytes",
    "loss_sq", "errors_sq", "count_sq", "loss_count", "errors_count", "exhausted",
)  # fmt: skip

DATA_CACHE = 1 << 28  # bytes of a rank's batches kept on the device for the next points (data/stream.py)


@dataclass
class StreamResult:
    """One point: its means, their standard errors, and what was read."""

    loss: float  # Σ loss / Σ targets: mean cross-entropy per example (per token for causal-lm)
    error: float  # Σ errors / Σ targets (nan without an error)
    examples: int  # units read: examples, or sequences for causal-lm
    loss_se: float
    error_se: float
    targets: int  # Σ targets: tokens scored for causal-lm, else examples
    bits_per_byte: float  # nan where the data gives no byte counts
    exhausted: bool  # every example was read (else the stopping rule ended the point)

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.loss < 700 else math.inf


def ratio_se(su: float, sv: float, suu: float, svv: float, suv: float, n: float, population) -> float:
    """Standard error of R = Σu / Σv over n sampled units (see the module's docstring)."""
    if n < 2 or sv == 0:
        return math.nan
    r = su / sv
    residual = max(0.0, suu - 2 * r * suv + r * r * svv)
    se = math.sqrt(residual / (n - 1) / n) / (sv / n)
    fpc = max(0.0, 1 - n / population) if population else 1.0
    return se * math.sqrt(fpc)


def result_of(sums: torch.Tensor, population: int | None) -> StreamResult:
    """A point's result from its MOMENTS sums (added over ranks where there are several)."""
    s = dict(zip(MOMENTS, sums.double().cpu().tolist()))
    n, count = s["n"], s["count"]
    if n == 0:
        raise LinpathError("the data is empty")
    exhausted = bool(s["exhausted"]) or (population is not None and n >= population)
    population = int(n) if exhausted else population
    loss, error = s["loss"] / count, s["errors"] / count
    loss_se = ratio_se(s["loss"], count, s["loss_sq"], s["count_sq"], s["loss_count"], n, population)
    error_se = ratio_se(s["errors"], count, s["errors_sq"], s["count_sq"], s["errors_count"], n, population)
    bpb = s["loss"] / math.log(2) / s["bytes"] if s["no_bytes"] == 0 and s["bytes"] > 0 else math.nan
    return StreamResult(loss, error, int(n), loss_se, error_se, int(count), bpb, exhausted)


def unit_sums(units: Units, nbytes: torch.Tensor | None) -> torch.Tensor:
    """One batch's contribution to the MOMENTS sums (on the device: no synchronization)."""
    y, e, c = units.loss, units.errors, units.count
    ones = torch.ones_like(c)
    b = nbytes.to(c.device, torch.float64) if nbytes is not None else torch.zeros_like(c)
    no_bytes = torch.zeros_like(c) if nbytes is not None else ones
    parts = [ones, y, e, c, b, no_bytes, y * y, e * e, c * c, y * c, e * c, torch.zeros_like(c)]
    return torch.stack(parts).sum(1)


class StreamedEvaluator:
    """Evaluates the state in `model` on a Stream under a Task; `shard` = (rank, size), by
    default the torchrun world's; `se_target` the stopping rule's bound on the loss's SE;
    `cache_bytes` of this rank's batches are kept on the device after the first point
    (data.stream.ShareCache: data that fit are read once; 0 reads the stream at every point)."""

    def __init__(
        self,
        model: nn.Module,
        stream: Stream,
        task: Task,
        device: torch.device,
        precision: str = "fp32",
        output_fn: OutputFn | None = None,
        se_target: float | None = None,
        min_examples: int = MIN_EXAMPLES,
        shard: tuple[int, int] | None = None,
        cache_bytes: int = DATA_CACHE,
    ):
        check_precision(precision)
        if se_target is not None and not (isinstance(se_target, (int, float)) and se_target > 0):
            raise LinpathError(f"se_target must be a positive number, got {se_target!r}")
        if isinstance(min_examples, bool) or not isinstance(min_examples, int) or min_examples < 2:
            raise LinpathError(f"min_examples must be an integer of at least 2, got {min_examples!r}")
        self.model = model.to(device).eval()
        self.stream, self.task, self.device, self.precision = stream, task, torch.device(device), precision
        self.output_fn, self.se_target, self.min_examples = output_fn, se_target, min_examples
        self.shard = shard or _world()
        self._share = ShareCache(stream, *self.shard, self.device, cache_bytes)
        self._checked = False
        try:
            self._takes_mask = "attention_mask" in inspect.signature(self.model.forward).parameters
        except (TypeError, ValueError):
            self._takes_mask = False

    def _forward(self, batch: Batch) -> torch.Tensor:
        """The model's logits; a batch's attention mask is passed when the model's forward takes
        one (Hugging Face models), so that padding is masked, and otherwise left out."""
        with autocast(self.device, self.precision):
            if batch.mask is None or not self._takes_mask:
                out = self.model(batch.inputs)
            else:
                out = self.model(batch.inputs, attention_mask=batch.mask)
        return to_logits(out, self.output_fn)

    def _score(self, batch: Batch) -> torch.Tensor:
        """The batch's MOMENTS sums; the first batch's failure is one line (wrong inputs for the
        model, targets out of range), later ones propagate as they are."""
        batch = batch.to(self.device)
        try:
            sums = unit_sums(self.task.units(self._forward(batch), batch.targets), batch.bytes)
        except (RuntimeError, IndexError, ValueError, TypeError) as e:
            if self._checked:
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise LinpathError(
                f"the model cannot run on the data ({batch.inputs.dtype} inputs of shape "
                f"{tuple(batch.inputs.shape)}, {self.task.name}): {first}"
            ) from None
        self._checked = True
        return sums

    @torch.no_grad()
    def evaluate_sums(self) -> torch.Tensor:
        """This point's MOMENTS sums over every rank (see the module's docstring)."""
        ranks = _ranks(self.shard[1])
        batches = self._share.batches()
        sums = torch.zeros(len(MOMENTS), dtype=torch.float64, device=self.device)
        while True:
            batch = next(batches, None)
            if batch is not None:
                sums += self._score(batch)
            else:
                sums[MOMENTS.index("exhausted")] = 1.0
            if self.se_target is not None:  # the ranks advance together, and stop together
                total = _final(_sum_over_ranks(sums.clone(), ranks), ranks)
                if total[-1] == 1 or self._reached(total):
                    return total
            elif batch is None:
                return _final(_sum_over_ranks(sums, ranks), ranks)

    def _reached(self, total: torch.Tensor) -> bool:
        n = float(total[0])
        if n < self.min_examples:
            return False
        se = result_of(total, self.stream.length).loss_se
        return math.isfinite(se) and se <= self.se_target

    def evaluate_current(self) -> StreamResult:
        return result_of(self.evaluate_sums(), self.stream.length)

    def evaluate_path(
        self, mix: StateMix, xs: Sequence[float], on_point: Callable[[], None] | None = None
    ) -> list[StreamResult]:
        """Results at each x of θ(x) = (1 - x)·mix.states[0] + x·mix.states[1]."""
        results = []
        for x in xs:
            mix.write((1.0 - float(x), float(x)))
            results.append(self.evaluate_current())
            if on_point is not None:
                on_point()
        return results


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _ranks(size: int) -> int:
    """How many ranks' sums are added: the process group's size under torchrun, else 1 (ranks
    simulated without a process group each report their own share)."""
    return size if size > 1 and dist.is_available() and dist.is_initialized() else 1


def _sum_over_ranks(sums: torch.Tensor, ranks: int) -> torch.Tensor:
    if ranks > 1:
        dist.all_reduce(sums)
    return sums


def _final(total: torch.Tensor, ranks: int) -> torch.Tensor:
    """The exhausted flag as 1 when every rank has read its whole share, else 0."""
    total = total.clone()
    total[-1] = 1.0 if total[-1] >= ranks else 0.0
    return total
