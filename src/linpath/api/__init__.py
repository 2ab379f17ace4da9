"""The Python API: the paper's analysis on your own model and checkpoints, one module a job:
lines.py (linpath.path and the one path job, evaluate_path), curve.py (PathCurve), streamed.py
(language models, model folders, streamed data), planes.py (plane, random_plane), alignment.py
(align), runs.py (load: a run folder's tables); resolve.py turns strings (names, files, folders)
into the objects these take, and path_folder.py writes `linpath path`'s folder; what they share:
options.py, states.py and inputs.py."""

from linpath.analysis.plane import Surface
from linpath.api.alignment import align
from linpath.api.curve import PathCurve
from linpath.api.inputs import as_evalset, checked_inputs, is_classification, make_score
from linpath.api.lines import evaluate_path, path
from linpath.api.options import PathOptions
from linpath.api.planes import plane, random_plane
from linpath.api.runs import RunTables, load
from linpath.api.states import endpoints, load_state

__all__ = [
    "PathCurve",
    "Surface",
    "path",
    "evaluate_path",
    "PathOptions",
    "plane",
    "random_plane",
    "align",
    "RunTables",
    "load",
    "endpoints",
    "checked_inputs",
    "load_state",
    "as_evalset",
    "is_classification",
    "make_score",
]
