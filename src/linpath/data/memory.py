"""Data sets that fit in memory as one uint8 tensor per split (MNIST, CIFAR-10).

The whole training set sits on the training device; a batch is an index into it, chosen by a
permutation that is a pure function of (seed, epoch). So a replicate's data order is
reproducible, and training can resume at any step without replaying the ones before.

Two ways to the same batches: `train_batches` yields them step by step (each step draws its
augmentation from generator(seed, "augment", step) and copies the draws to the device), and
`epoch_plan` + `ResidentTrain.batch` (the device loop's) draw a whole epoch ahead with the same
generator calls, move the plan to the device once, and build each batch there from a slice of
it, without a host copy, so that nothing in a step waits for the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch

from linpath.data.source import EvalSet, Split, iterations_per_epoch, normalize
from linpath.runtime.seeds import generator

# augment(images uint8 (B,C,H,W), generator) -> images uint8 (before normalization)
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class SplitAugment(Protocol):
    """An augmentation in two halves (e.g. cifar10.CropFlip), as epoch plans need: `draw` makes
    the CPU draws of a batch of b (integer or bool tensors whose last dimension is the batch),
    `apply` applies them on x's device; calling it is apply(x, *draw(len(x), gen))."""

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor: ...

    def draw(self, b: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]: ...

    def apply(self, x: torch.Tensor, *draws: torch.Tensor) -> torch.Tensor: ...


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

    def _train_images(self, device, augment: bool) -> tuple[torch.Tensor, bool]:
        """The training images on `device`, normalized once when that is allowed (see
        PRENORMALIZE_BYTES), and whether they are."""
        images = self.train.images.to(device)
        prenormalized = not augment and images.numel() * 4 <= self.PRENORMALIZE_BYTES
        return (self._normalized_train(images) if prenormalized else images), prenormalized

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
        images, prenormalized = self._train_images(device, augment)
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

    def plans_epochs(self, augment: bool) -> bool:
        """Whether epoch_plan can draw this source's epochs ahead (no augmentation, or one in
        two halves whose draws are integers)."""
        return not augment or self.augment_fn is None or hasattr(self.augment_fn, "draw")

    def epoch_plan(self, seed: int, epoch: int, batch_size: int, augment: bool = False) -> torch.Tensor:
        """Epoch `epoch`'s batches as one int64 table on the CPU, (1 + draw rows, N): row 0 the
        epoch's permutation (the examples in batch order), the other rows each example's
        augmentation draws, from the same generator calls as train_batches (a short last batch
        draws for its own size). Step k of the epoch is the columns [k·batch, (k+1)·batch)."""
        n = len(self.train)
        perm = torch.randperm(n, generator=generator(seed, "order", epoch))
        if not augment or self.augment_fn is None:
            return perm[None]
        per_epoch = iterations_per_epoch(n, batch_size)
        draws = []
        for k in range(per_epoch):
            b = min(batch_size, n - k * batch_size)
            step = epoch * per_epoch + k
            draws.append(
                [d.reshape(-1, b).long() for d in self.augment_fn.draw(b, generator(seed, "augment", step))]
            )
        return torch.cat([perm[None], *(torch.cat(parts, dim=1) for parts in zip(*draws))])

    def resident(self, device: str | torch.device, augment: bool) -> ResidentTrain:
        """The training split on `device` as ResidentTrain.batch reads it."""
        images, prenormalized = self._train_images(device, augment)
        fn = self.augment_fn if augment else None
        return ResidentTrain(images, self.train.labels.to(device), prenormalized, fn, self.mean, self.std)


class ResidentTrain:
    """The training split resident on the device, and a batch built from an epoch plan's columns
    with the ops train_batches uses (gather, augmentation, normalization): bitwise its batch.
    Reads nothing from the host, so it can run inside a captured CUDA graph."""

    def __init__(self, images, labels, prenormalized: bool, augment: SplitAugment | None, mean, std):
        self.images, self.labels, self.prenormalized, self.augment = images, labels, prenormalized, augment
        # source.normalize's constants, made once: it builds them per call from Python floats,
        # a host-to-device copy that a graph cannot hold (same values, same ops below)
        self.mean = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
        self.draw_shapes = None  # rows and dtypes of the augmentation's draws, learnt from one draw
        if augment is not None:
            probe = augment.draw(1, torch.Generator().manual_seed(0))
            self.draw_shapes = [(d.reshape(-1, 1).shape[0], d.shape[:-1], d.dtype) for d in probe]

    def batch(self, columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of an epoch plan's columns (rows as in InMemorySource.epoch_plan), on the device."""
        index = columns[0]
        x = self.images.index_select(0, index)
        if self.augment is not None:
            x = self.augment.apply(x, *self._draws(columns))
        if not self.prenormalized:
            x = (x.float().div_(255.0) - self.mean) / self.std  # source.normalize
        return x, self.labels.index_select(0, index)

    def _draws(self, columns: torch.Tensor) -> list[torch.Tensor]:
        out, row = [], 1
        for rows, shape, dtype in self.draw_shapes:
            part = columns[row : row + rows]
            out.append(part.reshape(*shape, part.shape[-1]).to(dtype))
            row += rows
        return out
