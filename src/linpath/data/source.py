"""What every data set offers the stages above it: the `Source` protocol, the evaluation set,
one `normalize`, and the arithmetic of epochs.

A Source yields training batches that are a pure function of (seed, step), so training resumes
at any step exactly, and evaluation splits preprocessed once on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch


def iterations_per_epoch(num_examples: int, batch_size: int) -> int:
    """ceil(N / batch): the last batch of an epoch may be short (OpenLTH's convention)."""
    return -(-num_examples // batch_size)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 images (B, C, H, W) -> float32, scaled to [0, 1], then per-channel (x - mean) / std."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float().div_(255.0) - m) / s


@dataclass
class Split:
    """One split in memory: images (N, C, H, W) uint8, labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class EvalSet:
    """An evaluation split preprocessed once, on the device it is evaluated on."""

    inputs: torch.Tensor  # float32, normalized
    labels: torch.Tensor  # int64
    name: str = "test"

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self), batch_size):
            yield self.inputs[i : i + batch_size], self.labels[i : i + batch_size]

    def subset(self, indices: torch.Tensor) -> EvalSet:
        return EvalSet(self.inputs[indices], self.labels[indices], self.name)


@dataclass(frozen=True)
class SourceSplit:
    """A named data set's split, not read yet: a path job materializes it once (eval_set) or
    streams it (data/stream.py's as_stream: an image-folder tree decoded batch by batch)."""

    source: Source
    split: str = "test"

    def eval_set(self, device) -> EvalSet:
        return self.source.eval_set(self.split, device)

    @property
    def streams_images(self) -> bool:
        """Whether the split is an image-folder tree, read a batch at a time when streamed."""
        return hasattr(self.source, "tree")


class Source(Protocol):
    """A data set as the training loop and the sweep use it."""

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_train_examples(self) -> int: ...

    @property
    def num_classes(self) -> int: ...

    def eval_set(self, split: str, device: str | torch.device = "cpu") -> EvalSet: ...

    def train_batches(
        self,
        seed: int,
        batch_size: int,
        start_step: int = 0,
        device: str | torch.device = "cpu",
        augment: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
