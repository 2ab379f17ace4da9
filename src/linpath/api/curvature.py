"""The curvature a path job adds to its curve (api/options.py's CurvatureRequest): the slope and
the directional curvature at every x as two more columns, and at chosen x the Hessian's top
eigenvalues and trace, on the same engine, subset and BatchNorm policy as the curve itself."""

from __future__ import annotations

import dataclasses

import numpy as np

from linpath.api.curve import PathCurve
from linpath.api.options import CurvatureRequest
from linpath.engine.curvature import streamed_points
from linpath.errors import LinpathError
from linpath.sweep.curvature import line_curvature


def with_curvature(curve: PathCurve, job, start: dict, end: dict, request: CurvatureRequest) -> PathCurve:
    """`curve` with slope and curvature columns and, at request.at, spectra (preloaded job)."""
    along = line_curvature(job, start, end, request.moving, request.examples)
    points = along.points([float(x) for x in curve.x])
    spectra = {}
    for x in request.at:
        spectrum = along.spectrum(x, request.k, request.steps)
        trace = along.trace(x, request.matvecs)
        spectra[float(x)] = {
            "eigenvalues": spectrum.eigenvalues,
            "residuals": spectrum.residuals,
            "lanczos_steps": spectrum.steps,
            "trace": trace.trace,
            "trace_se": trace.se,
            "trace_matvecs": trace.matvecs,
            "trace_method": trace.method,
        }
    return _joined(curve, points, spectra or None)


def with_streamed_curvature(curve: PathCurve, evaluator, mix, request: CurvatureRequest) -> PathCurve:
    """`curve` with slope and curvature columns (a streamed job: the directional curvature only)."""
    if request.at:
        raise LinpathError("eigenvalues and traces (--curvature-at) are not supported on streamed paths")
    points = streamed_points(evaluator, mix, [float(x) for x in curve.x], request.moving or "path")
    return _joined(curve, points, None)


def _joined(curve: PathCurve, points, spectra) -> PathCurve:
    extra = {
        "slope": np.array([p.slope for p in points], dtype=float),
        "curvature": np.array([p.curvature for p in points], dtype=float),
    }
    return dataclasses.replace(curve, quantities={**(curve.quantities or {}), **extra}, spectra=spectra)
