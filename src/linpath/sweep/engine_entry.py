"""The one entry to the engine, for every job that evaluates states (sweep, path, plane,
spawn and the Python API): the evaluated (sub)set of the split, the BatchNorm-recompute
batches, the engine itself, and a line job that evaluates a setting's paths on it.

Having one entry means a setting's numbers do not depend on which command computed them: the
same subset, the same recompute batches, the same precision and parameter subset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from linpath.data.source import EvalSet
from linpath.engine.curvature import PathCurvature
from linpath.engine.evaluator import PathEvaluator
from linpath.engine.params import restrict, select
from linpath.engine.scoring import Result, classification_score
from linpath.engine.subsets import class_counts, stratified_subset
from linpath.errors import LinpathError
from linpath.runtime.device import check_fits
from linpath.sweep.grids import Grid

PROGRESS_STEP = 10  # points per progress report


def evaluation_subset(evalset: EvalSet, eval_examples: int) -> tuple[EvalSet, torch.Tensor | None]:
    """(the evaluated set, the split's examples per class) for --eval-examples N; the whole
    split and None when N is 0 or the split's size (no sampling, no standard error). More than
    the split holds is refused: its setting would be named for N examples and hold fewer."""
    if eval_examples > len(evalset):
        raise LinpathError(
            f"--eval-examples {eval_examples} is more than the split holds ({len(evalset)} examples); "
            "leave the flag out to evaluate the whole split"
        )
    if not eval_examples or eval_examples >= len(evalset):
        return evalset, None
    population = class_counts(evalset.labels)
    indices = stratified_subset(evalset.labels, eval_examples).to(evalset.labels.device)
    return evalset.subset(indices), population


def setting_subset(evalset: EvalSet, setting) -> tuple[EvalSet, torch.Tensor | None]:
    """evaluation_subset as a sweep setting asks for it: every field of the setting that
    decides the evaluated examples is read here, so a new one is used in one place."""
    return evaluation_subset(evalset, setting.eval_examples)


def bn_batches(data, count: int, batch_size: int, seed: int = 0, device="cpu") -> list[torch.Tensor]:
    """The batches the recompute BatchNorm policy re-estimates statistics from, the same at
    every x, t and replicate (so recomputed statistics differ only by the weights): a data
    Source's first `count` training batches for `seed`, without augmentation; or the first
    `count` chunks of `batch_size` inputs of an EvalSet (data a user gave)."""
    if isinstance(data, EvalSet):
        chunks = list(data.inputs.split(batch_size))[:count]
    else:
        stream = data.train_batches(seed, batch_size, device=device, augment=False)
        chunks = [next(stream)[0]]
    first = chunks[0]
    check_fits(
        count * first.numel() * first.element_size(),
        torch.device(device),
        f"--bn-batches {count} (x batch {batch_size} x {first[0].numel()} inputs x "
        f"{first.element_size()} bytes, held for the whole sweep)",
    )
    if not isinstance(data, EvalSet):
        chunks += [next(stream)[0] for _ in range(count - 1)]
    return chunks


def open_engine(model, evalset: EvalSet, precision: str = "fp32", **options) -> PathEvaluator:
    """The engine on `evalset` (on its device); `options` are PathEvaluator's (batch_size,
    population, score, output_fn, compile)."""
    return PathEvaluator(model, evalset, precision=precision, **options)


@dataclass
class LineJob:
    """A setting's paths on one engine: each (start, end) restricted to the parameter subset,
    then evaluated at a grid's x (an adaptive grid refined where the curve peaks)."""

    engine: PathEvaluator
    bn: str = "interpolate"
    bn_batches: list | None = None
    selected: set[str] | None = None  # the state-dict keys the path moves (None: all)
    hold: str = "end"

    def curve(
        self,
        start: dict,
        end: dict,
        xs: Grid | Sequence[float],
        on_points: Callable[[int], None] | None = None,
    ) -> tuple[list[float], list[Result]]:
        """(x, result) along θ(x) = (1 - x)·start + x·end; on_points(n) after every n points."""
        if self.selected is not None:
            start, end = restrict(start, end, self.selected, self.hold)
        segment = self.engine.path(start, end, bn=self.bn, bn_batches=self.bn_batches)

        def evaluate(chunk):
            if on_points is None:
                return segment.evaluate(chunk)
            results = []
            for i in range(0, len(chunk), PROGRESS_STEP):
                results += segment.evaluate(chunk[i : i + PROGRESS_STEP])
                on_points(len(chunk[i : i + PROGRESS_STEP]))
            return results

        if isinstance(xs, Grid):
            return xs.run(evaluate)
        xs = [float(x) for x in xs]
        return xs, evaluate(xs)


def line_job(
    model, evalset: EvalSet, setting, score=classification_score, bn_inputs=None, **options
) -> LineJob:
    """The line job of a sweep setting on `evalset`, the setting passed whole: its parameter
    subset selected on `model`, the engine opened with its precision, `score` and `options`
    (open_engine's: batch_size, population, output_fn, compile); `bn_inputs` are the recompute
    policy's batches (bn_batches)."""
    selected = select(setting.params, model) if setting.params else None
    engine = open_engine(model, evalset, setting.precision, score=score, **options)
    return LineJob(engine, setting.bn, bn_inputs, selected, setting.hold)


def line_curvature(
    job: LineJob, start: dict, end: dict, moving: str | None = None, limit=None
) -> PathCurvature:
    """PathCurvature of θ(x) = (1 − x)·start + x·end as `job` evaluates it: its parameter subset
    (held tensors do not move, so u is 0 on them), BatchNorm policy and recompute batches;
    spectra and traces are then over the moving parameters only."""
    if job.selected is not None:
        start, end = restrict(start, end, job.selected, job.hold)
    curve = PathCurvature(job.engine, start, end, job.bn, job.bn_batches, moving, limit)
    curve.subset = job.selected
    return curve
