"""A setting's curvature along a path: the line job's engine, subset and BatchNorm policy, so that
the curvature is that of the curve the sweep plots for the same setting (engine/curvature.py)."""

from __future__ import annotations

from linpath.engine.curvature import PathCurvature
from linpath.engine.params import restrict
from linpath.sweep.engine_entry import LineJob


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
