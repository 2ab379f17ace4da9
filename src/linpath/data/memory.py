"""Data sets that fit in memory as one uint8 tensor per split (MNIST, CIFAR-10).

The whole training set sits on the training device; a batch is an index into it, chosen by a
permutation that is a pure function of (seed, epoch). So a replicate's data order is
reproducible, and training can resume at any step without replaying the ones before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..steps import iterations_per_epoch


def derived_seed(*parts) -> int:
    """A 63-bit seed derived from its parts, so independent streams never share a seed."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derived_seed(*parts))


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

    def subset(self, indices: torch.Tensor) -> "EvalSet":
        return EvalSet(self.inputs[indices], self.labels[indices], self.name)


# augment(images uint8 (B,C,H,W), generator) -> images uint8 (before normalization)
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class InMemorySource:
    """A data set whose splits are uint8 tensors; see the module docstring."""

    name: str
    train: Split
    test: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    augment_fn: Augment | None = None

    @property
    def num_train_examples(self) -> int:
        return len(self.train)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images.float().div_(255.0) - mean) / std

    def eval_set(self, split: str, device: str | torch.device = "cpu") -> EvalSet:
        data = self.test if split == "test" else self.train
        return EvalSet(self.normalize(data.images.to(device)), data.labels.to(device), split)

    def train_batches(
        self,
        seed: int,
        batch_size: int,
        start_step: int = 0,
        device: str | torch.device = "cpu",
        augment: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches of steps start_step, start_step+1, ... forever.

        Under data parallelism every rank computes the same global batch indices and keeps
        its share (indices rank::world_size), so the global batch is the preset's batch.
        """
        images = self.train.images.to(device)
        labels = self.train.labels.to(device)
        n = len(labels)
        per_epoch = iterations_per_epoch(n, batch_size)
        step = start_step
        epoch, perm = -1, None
        while True:
            if step // per_epoch != epoch:
                epoch = step // per_epoch
                perm = torch.randperm(n, generator=generator(seed, "order", epoch)).to(device)
            offset = (step % per_epoch) * batch_size
            index = perm[offset : offset + batch_size][rank::world_size]
            x = images[index]
            if augment and self.augment_fn is not None:  # on uint8: padding is black, as in OpenLTH
                x = self.augment_fn(x, generator(seed, "augment", step))
            yield self.normalize(x), labels[index]
            step += 1
