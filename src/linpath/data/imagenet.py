"""ImageNet (or any image-folder tree) through a DataLoader whose workers decode JPEGs.

Where the data is: $LINPATH_IMAGENET if set (a folder holding {train,val}/<class>/*, or a
.tar(.gz) of one, or a folder holding one such archive), else <data-root>/imagenet. So
`LINPATH_IMAGENET=.../tiny-imagenet-10 linpath run imagenet_resnet_50 --image-size 56` runs the
ImageNet pipeline on the Tiny-ImageNet subset. Archives are read into memory; extract large ones.

Transforms (OpenLTH's): train, random-resized crop to S (scale 0.1-1, aspect 0.8-1.25, bilinear)
+ horizontal flip; test, resize the shorter side to round(S*256/224) then center crop S. S is
the spec's image_size (224 by default). Every random draw comes from (seed, step, position in
the global batch), so a replicate's batches do not depend on the number of workers or ranks,
and training resumes at any step exactly.
"""

from __future__ import annotations

import io
import math
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from linpath.data.imagefolder import Tree, is_archive, read_tree
from linpath.data.normalization import NORMALIZATION
from linpath.data.source import EvalSet, iterations_per_epoch, normalize
from linpath.errors import LinpathError
from linpath.runtime.seeds import derived_seed, generator

MEAN, STD = NORMALIZATION["imagenet"]
SPLITS = ("train", "val", "test")
SCALE, RATIO = (0.1, 1.0), (0.8, 1.25)
DEFAULT_SIZE = 224


def workers() -> int:
    """Decoding processes: $LINPATH_WORKERS, else one per core up to 8."""
    env = os.environ.get("LINPATH_WORKERS")
    if env:
        return max(0, int(env))
    return min(8, os.cpu_count() or 1)


def locate(root: Path) -> Path:
    env = os.environ.get("LINPATH_IMAGENET")
    path = Path(env).expanduser() if env else Path(root) / "imagenet"
    hint = (
        "expected {train,val}/<class>/*.JPEG or a .tar.gz of that tree; point LINPATH_IMAGENET at another "
        "image-folder tree, or name the folder holding imagenet/ with --data-root"
    )
    if is_archive(path):
        return path
    if not path.is_dir():
        raise LinpathError(
            f"no ImageNet data at {path} ({'from LINPATH_IMAGENET' if env else 'under the data root'}): {hint}"
        )
    if any((p / "train").is_dir() for p in [path, *path.iterdir()] if p.is_dir()):
        return path
    archives = sorted(p for p in path.iterdir() if is_archive(p))
    if len(archives) == 1:
        return archives[0]
    raise LinpathError(f"no image-folder tree in {path}: {hint}")


def random_resized_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """A crop box (left, top, right, bottom) of area fraction in SCALE and aspect ratio in RATIO
    (log-uniform), ten tries, else the central crop clamped to RATIO (Szegedy et al.'s recipe)."""
    area = width * height
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    ratio = width / height
    if ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif ratio > RATIO[1]:
        w, h = int(round(height * RATIO[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


class _Images(Dataset):
    """Item (index, sample seed or None) -> (uint8 image (3, S, S), label). Seed None is the
    test transform; a seed draws the training crop and flip."""

    def __init__(self, items: list[tuple[int, Path | bytes]], size: int, where: Path):
        self.items, self.size, self.where = items, size, where

    def __len__(self):
        return len(self.items)

    def __getitem__(self, key):
        from PIL import Image, UnidentifiedImageError

        index, seed = key
        label, src = self.items[index]
        try:
            with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as img:
                img = img.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise LinpathError(f"cannot decode image {index} of {self.where}: {e}") from None
        s = self.size
        if seed is None:
            short = int(round(s * 256 / 224))
            w, h = img.size
            scale = short / min(w, h)
            img = img.resize((max(s, int(round(w * scale))), max(s, int(round(h * scale)))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s))
        else:
            rng = random.Random(seed)
            box = random_resized_box(*img.size, rng)
            img = img.resize((s, s), Image.BILINEAR, box=box)
            if rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy()), label


class _StepBatches:
    """The batch sampler: step s -> this rank's share of the global batch of step s."""

    def __init__(self, n, batch_size, seed, start_step, augment, rank, world_size):
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start_step
        self.augment, self.rank, self.world_size = augment, rank, world_size

    def __iter__(self):
        per_epoch = iterations_per_epoch(self.n, self.batch_size)
        step, epoch, perm = self.start, -1, None
        while True:
            if step // per_epoch != epoch:
                epoch = step // per_epoch
                perm = torch.randperm(self.n, generator=generator(self.seed, "order", epoch)).tolist()
            offset = (step % per_epoch) * self.batch_size
            batch = list(enumerate(perm[offset : offset + self.batch_size]))[self.rank :: self.world_size]
            yield [
                (i, derived_seed(self.seed, "augment", step, pos) if self.augment else None)
                for pos, i in batch
            ]
            step += 1


class ImageFolderSource:
    """The Source interface of InMemorySource (see memory.py) over an image-folder tree."""

    def __init__(self, tree: Tree, image_size: int = DEFAULT_SIZE, name: str = "imagenet"):
        self.name, self.tree, self.image_size = name, tree, image_size
        self.classes = tree.classes("train")
        if not self.classes:
            raise LinpathError(f"{tree.where} has no training images (expected train/<class>/*)")
        self.train_items = tree.labeled(("train",), self.classes)
        self.mean, self.std = MEAN, STD
        self._eval: dict = {}

    @property
    def num_train_examples(self) -> int:
        return len(self.train_items)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _size(self) -> int:
        return self.image_size or DEFAULT_SIZE

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images, self.mean, self.std)

    def _loader(self, items, batch_sampler, device) -> DataLoader:
        n = workers()
        return DataLoader(
            _Images(items, self._size(), self.tree.where),
            batch_sampler=batch_sampler,
            num_workers=n,
            pin_memory=torch.device(device).type == "cuda",
            prefetch_factor=4 if n else None,
        )

    def train_batches(
        self,
        seed: int,
        batch_size: int,
        start_step: int = 0,
        device="cpu",
        augment: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        sampler = _StepBatches(len(self.train_items), batch_size, seed, start_step, augment, rank, world_size)
        for images, labels in self._loader(self.train_items, sampler, device):
            yield self.normalize(images.to(device, non_blocking=True)), labels.to(device, non_blocking=True)

    def eval_set(self, split: str, device="cpu") -> EvalSet:
        """The split preprocessed once with the test transform (train, or val/test for "test").
        Held as float32 on the device: fine for subsets, 30 GB for the full ImageNet val set."""
        names = ("train",) if split == "train" else ("val", "test")
        key = (names, self._size())
        if key not in self._eval:
            items = self.tree.labeled(names, self.classes)
            sampler = [
                [(i, None) for i in range(j, min(j + 256, len(items)))] for j in range(0, len(items), 256)
            ]
            parts = list(self._loader(items, sampler, "cpu"))
            self._eval[key] = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
        images, labels = self._eval[key]
        return EvalSet(self.normalize(images.to(device)), labels.to(device), split)


def load(root: Path, image_size: int = 0) -> ImageFolderSource:
    path = locate(Path(root))
    return ImageFolderSource(read_tree(path, SPLITS), image_size or DEFAULT_SIZE)
