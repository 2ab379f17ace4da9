"""The Python API: the paper's analysis on your own model and checkpoints, one module a job:
lines.py (linpath.path), curve.py (PathCurve), streamed.py (language models, model folders, streamed data), planes.py (plane, random_plane), alignment.py (align),
runs.py (load: a run folder's tables), and what they share, states.py and inputs.py."""

from linpath.analysis.plane import Surface
from linpath.api.alignment import align
from linpath.api.curve import PathCurve
from linpath.api.inputs import as_evalset, fit_inputs, is_classification, make_score
from linpath.api.lines import evaluate_curve, path
from linpath.api.planes import plane, random_plane
from linpath.api.runs import RunTables, load
from linpath.api.states import endpoints, load_state
from linpath.api.streamed import evaluate_streamed

__all__ = [
    "PathCurve",
    "Surface",
    "path",
    "plane",
    "random_plane",
    "align",
    "RunTables",
    "load",
    "evaluate_curve",
    "endpoints",
    "fit_inputs",
    "load_state",
    "as_evalset",
    "is_classification",
    "make_score",
    "evaluate_streamed",
]
