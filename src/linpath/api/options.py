"""PathOptions: how a path job runs, apart from the setting that decides its numbers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from linpath.api.inputs import BatchFn
from linpath.engine.outputs import OutputFn
from linpath.errors import LinpathError


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

    def __post_init__(self):
        size = self.batch_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            raise LinpathError(f"batch_size must be a positive integer, got {size!r}")
