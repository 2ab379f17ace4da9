"""Scoring one network on preloaded data: the loss and error of each batch, summed by class on
the device, and the standard errors of a subset's estimate of the whole split."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from linpath.engine.outputs import OutputFn, to_logits
from linpath.engine.subsets import class_counts
from linpath.errors import LinpathError
from linpath.runtime.device import autocast


def classification_score(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The default score of one batch: (summed cross-entropy, number of top-1 errors).

    A score is any `score(outputs, targets) -> (loss summed over the batch, errors summed over
    the batch)`; the engine divides both by the number of examples. Other tasks (regression,
    language models) pass their own to PathEvaluator (see api/inputs.py's make_score).
    """
    return F.cross_entropy(outputs, targets, reduction="sum").double(), (outputs.argmax(1) != targets).sum()


@dataclass
class Result:
    loss: float  # mean cross-entropy
    error: float  # 1 - accuracy
    examples: int
    loss_se: float = 0.0  # standard error as an estimate of the whole split's value
    error_se: float = 0.0

    def __post_init__(self):
        # a NaN loss means NaN outputs, whose argmax (and so the error) is meaningless
        if math.isnan(self.loss):
            self.error, self.error_se = math.nan, math.nan


class Tally:
    """Sums of per-example loss and error by class, kept on the device (no sync per batch).

    The standard errors are those of the subset's mean as an estimate of the whole split's
    (see stratified_se), from the class counts N_c of the split (`population`). With the
    default classification score they are exact per example; a custom score gives only batch
    sums, so its standard errors are NaN.

    Per-example values are summed by class once per PENDING_EXAMPLES, not per batch: a batch's
    sums were a dozen small operations, a large share of a small network's evaluation. The
    additions happen in the same order, so the sums are the same.
    """

    PENDING_EXAMPLES = 1 << 15

    def __init__(self, population: torch.Tensor | None, device):
        # the class counts stay on the CPU, where result() computes the standard errors
        self.population = population.cpu() if population is not None else None
        classes = len(population) if population is not None else 1
        self.sums = torch.zeros(5, classes, dtype=torch.float64, device=device)  # n, Σl, Σl², Σe, Σe²
        self.per_example = True
        self.loss, self.errors, self.n = 0.0, 0.0, 0
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (losses, wrong, labels)
        self.pending_n = 0

    def add(self, outputs: torch.Tensor, labels: torch.Tensor, score) -> None:
        if outputs.dtype in (torch.bfloat16, torch.float16):  # autocast's: scored in float32
            outputs = outputs.float()
        if score is classification_score and self.population is not None:
            losses = F.cross_entropy(outputs, labels, reduction="none")
            self.pending.append((losses, outputs.argmax(1) != labels, labels))
            self.pending_n += len(labels)
            if self.pending_n >= self.PENDING_EXAMPLES:
                self._sum_pending()
        else:
            loss, errors = score(outputs, labels)
            self.loss += float(loss)
            self.errors += float(errors)
            self.n += len(labels)
            self.per_example = False

    def _sum_pending(self) -> None:
        if not self.pending:
            return
        losses, wrong, labels = (torch.cat(parts) for parts in zip(*self.pending))
        losses, wrong = losses.double(), wrong.double()
        values = torch.stack([torch.ones_like(losses), losses, losses * losses, wrong, wrong])
        self.sums.index_add_(1, labels, values)
        self.pending, self.pending_n = [], 0

    def result(self) -> Result:
        if not self.per_example:
            n = self.n
            exact = self.population is not None and n == int(self.population.sum())
            se = 0.0 if exact else math.nan
            return Result(self.loss / n, self.errors / n, n, se, se)
        self._sum_pending()
        s = self.sums.cpu()
        n = int(s[0].sum())
        loss_se = stratified_se(s[0], s[1], s[2], self.population)
        error_se = stratified_se(s[0], s[3], s[4], self.population)
        return Result(float(s[1].sum()) / n, float(s[3].sum()) / n, n, loss_se, error_se)


SMALL_STRATUM = 10  # below this many examples in some class, class variances are pooled


def stratified_se(
    count: torch.Tensor, total: torch.Tensor, total_sq: torch.Tensor, population: torch.Tensor
) -> float:
    """Standard error of a stratified sample's mean as an estimate of the population's mean.

    SE² = Σ_c W_c² s_c² / n_c · (1 - n_c/N_c), W_c = N_c/N. With a class of fewer than
    SMALL_STRATUM examples its own s_c² is unreliable (0 for one example, or for a few that are
    all right), so then every class uses the pooled within-class variance Σ(n_c - 1)s_c² /
    Σ(n_c - 1). NaN where no class holds two examples (nothing to estimate a variance from).
    """
    count, total, total_sq, population = (v.double() for v in (count, total, total_sq, population))
    mean_c = total / count.clamp(min=1)
    ss_c = (total_sq - count * mean_c * mean_c).clamp(min=0)  # within-class sums of squares
    dof = (count - 1).clamp(min=0)
    fpc = (1 - count / population.clamp(min=1)).clamp(min=0)
    w = population / float(population.sum())
    sampled = count > 0
    if bool((fpc[sampled] == 0).all()):
        return 0.0  # every sampled class taken whole: the sample is the population there
    if bool((count[sampled] < SMALL_STRATUM).any()):
        if float(dof.sum()) == 0:
            return math.nan
        var_c = torch.full_like(count, float(ss_c.sum() / dof.sum()))
    else:
        var_c = ss_c / dof.clamp(min=1)
    terms = torch.where(sampled, w * w * var_c / count.clamp(min=1) * fpc, torch.zeros_like(var_c))
    return math.sqrt(float(terms.sum()))


def make_tally(labels: torch.Tensor, population) -> Tally:
    counts = class_counts(labels)
    if population is None and counts is not None:
        population = counts
    if population is not None and counts is not None and len(counts) > len(population):
        raise LinpathError("the evaluation subset has a class its population does not")
    return Tally(population, labels.device)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    evalset,
    batch_size: int = 2000,
    precision: str = "fp32",
    score=classification_score,
    population: torch.Tensor | None = None,
    output_fn: OutputFn | None = None,
) -> Result:
    """Mean cross-entropy and error (or another `score`) of `model` (in eval mode) on a preloaded EvalSet."""
    model.eval()
    device = evalset.inputs.device
    tally = make_tally(evalset.labels, population)
    for i in range(0, len(evalset.labels), batch_size):
        with autocast(device, precision):
            outputs = to_logits(model(evalset.inputs[i : i + batch_size]), output_fn)
        tally.add(outputs, evalset.labels[i : i + batch_size], score)
    return tally.result()
