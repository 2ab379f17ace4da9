"""PathOptions: how a path job runs, apart from the setting that decides its numbers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from linpath.api.inputs import BatchFn
from linpath.engine.outputs import OutputFn
from linpath.errors import LinpathError


@dataclass(frozen=True)
class CurvatureRequest:
    """What a path job also measures of the loss's curvature (engine/curvature.py): at every x the
    slope dL/dx and the directional curvature d²L/dx² = uᵀHu (u = end − start, loss units; its
    sign says where the path is convex); at each x of `at` the top `k` Hessian eigenvalues
    (Lanczos, `steps` products; residual norms as error bounds) and the trace (Hutch++ with
    `matvecs` products, with its standard error). `moving` "path" lets BatchNorm statistics move
    with x as the curve does (the default under interpolate), "weights" holds them (the Hessian
    PyHessian uses); `examples` limits the spectra and traces to the first N evaluated examples."""

    at: tuple[float, ...] = ()
    k: int = 5
    steps: int | None = None
    matvecs: int = 60
    moving: str | None = None
    examples: int | None = None

    def __post_init__(self):
        for name in ("k", "matvecs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LinpathError(f"curvature {name} must be a positive integer, got {value!r}")
        if self.moving not in (None, "path", "weights"):
            raise LinpathError(f"curvature moving must be path or weights, got {self.moving!r}")

    @classmethod
    def of(cls, value) -> CurvatureRequest | None:
        """path()'s curvature=: False/None (none), True (along the path), a dict of the fields, or one."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**{**value, "at": tuple(float(x) for x in value.get("at", ()))})
        raise LinpathError(
            f"curvature must be True, a dict or a CurvatureRequest, got {type(value).__name__}"
        )


@dataclass(frozen=True)
class PathOptions:
    """How one path job runs, besides its setting (sweep/setting.py's SweepSetting, which
    decides the numbers): where, with which of the user's functions, what it lets through.
    `bn_data` gives the batches that re-estimate BatchNorm statistics under bn="recompute": a
    DataLike (its first chunks of bn_batch_size inputs) or a data Source (its first training
    batches for bn_seed, the sweep's recipe); default: the evaluation inputs."""

    device: torch.device | str | None = None  # default: the model's
    batch_size: int | None = None  # the engine's choice
    key: str | None = None  # a dotted path to the state dict inside each checkpoint
    loss_fn: BatchFn | None = None
    error_fn: BatchFn | None = None
    output_fn: OutputFn | None = None
    allow_nonfinite: bool = False
    bn_data: object = None
    bn_batch_size: int = 128
    bn_seed: int = 0
    align_end: bool = False  # permute the end state's units to match the start's first
    shard: tuple[int, int] | None = None  # streamed: (rank, size), default the torchrun world's
    on_points: Callable[[int], None] | None = None  # called with n after every n points
    copy_model: bool = True  # False: the model is the job's to overwrite (a fresh one)
    curvature: CurvatureRequest | None = None  # also the loss's curvature along the path

    def __post_init__(self):
        size = self.batch_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            raise LinpathError(f"batch_size must be a positive integer, got {size!r}")
