"""linpath: neural-network optimization along linear paths in weight space.

The public Python API (see api/ and docs/own_model.md):
    linpath.path(model, start_state, end_state, data, ...) -> linpath.PathCurve
    linpath.plane(model, origin, a, b, data, ...) / linpath.random_plane(...) -> linpath.Surface
    linpath.align(state_a, state_b, model) -> state_b permuted to match a (LeNet, VGG, ResNet, MLPs)
    linpath.load(run_dir) -> linpath.RunTables (the run's tables as pandas DataFrames)
    linpath.Keeper(run_dir, model, total_steps) -> keeps the paper's states from your own loop
It is imported on first use, so `import linpath` (and the CLI's start) stays light.
"""

from typing import TYPE_CHECKING

from linpath._version import __version__
from linpath.errors import LinpathError

__all__ = [
    "path",
    "PathCurve",
    "plane",
    "random_plane",
    "Surface",
    "align",
    "load",
    "RunTables",
    "load_state",
    "Keeper",
    "LinpathError",
    "__version__",
]
_API = set(__all__) - {"LinpathError", "__version__", "Keeper"}

if TYPE_CHECKING:
    from linpath.api import PathCurve, RunTables, Surface, align, load, load_state, path, plane, random_plane
    from linpath.train.keeper import Keeper


def __getattr__(name: str):
    if name == "Keeper":  # train/keeper.py: light (no matplotlib), apart from the API
        from linpath.train.keeper import Keeper

        return Keeper
    if name in _API:
        from linpath import api

        return getattr(api, name)
    raise AttributeError(f"module 'linpath' has no attribute {name!r}")
