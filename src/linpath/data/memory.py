"""Data sets that fit in memory as one uint8 tensor per split (MNIST, CIFAR-10).

The whole training set sits on the training device; a batch is an index into it, chosen by a
permutation that is a pure function of (seed, epoch). So a replicate's data order is
reproducible, and training can resume at any step without replaying the ones before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from linpath.data.source import EvalSet, Split, iterations_per_epoch, normalize
from linpath.runtime.seeds import generator

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
    _normalized: dict = field(default_factory=dict, repr=False, compare=False)  # device -> train inputs

    # Without augmentation the whole training split is normalized once (per device) when it is
    # at most this large, and a batch is a gather from it: the same numbers as normalizing each
    # batch (the ops are elementwise), without a float conversion per step and per replicate.
    PRENORMALIZE_BYTES = 1 << 30

    @property
    def num_train_examples(self) -> int:
        return len(self.train)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images, self.mean, self.std)

    def eval_set(self, split: str, device: str | torch.device = "cpu") -> EvalSet:
        data = self.test if split == "test" else self.train
        return EvalSet(self.normalize(data.images.to(device)), data.labels.to(device), split)

    def _normalized_train(self, images: torch.Tensor) -> torch.Tensor:
        key = str(images.device)
        if key not in self._normalized:
            self._normalized[key] = self.normalize(images)
        return self._normalized[key]

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
        prenormalized = not augment and images.numel() * 4 <= self.PRENORMALIZE_BYTES
        if prenormalized:
            images = self._normalized_train(images)
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
            x = images.index_select(0, index)  # a row copy: 3x faster than images[index] here
            if augment and self.augment_fn is not None:  # on uint8: padding is black, as in OpenLTH
                x = self.augment_fn(x, generator(seed, "augment", step))
            yield (x if prenormalized else self.normalize(x)), labels.index_select(0, index)
            step += 1
