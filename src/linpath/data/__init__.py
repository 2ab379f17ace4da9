"""Data sets by name: one registry entry per data set holds its loader and the facts other
stages need (classes, training examples, input shape), so they never restate them.

Each loader returns a `Source` (see source.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from linpath.data import cifar10, imagenet, mnist
from linpath.data.locations import default_data_root
from linpath.data.source import Source
from linpath.errors import LinpathError


@dataclass(frozen=True)
class DatasetInfo:
    load: Callable[[Path], Source]
    num_classes: int
    num_train_examples: int  # the full data set's (OpenLTH's iterations per epoch come from it)
    input_shape: tuple[int, int, int]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(mnist.load, 10, 60000, (1, 28, 28)),
    "cifar10": DatasetInfo(cifar10.load, 10, 50000, (3, 32, 32)),
    "imagenet": DatasetInfo(imagenet.load, 1000, 1281167, (3, 224, 224)),
}


# what every named data set's inputs go through (source.normalize): scaled to [0, 1], then
# (x - mean) / std per channel, as its presets train
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": (mnist.MEAN, mnist.STD),
    "cifar10": (cifar10.MEAN, cifar10.STD),
    "imagenet": (imagenet.MEAN, imagenet.STD),
}


def normalization_text(name: str) -> str:
    """The named data set's input normalization, in words: 'x/255, then (x - 0.1307) / 0.3081'."""
    mean, std = NORMALIZATION[name]

    def values(v: tuple[float, ...]) -> str:
        return str(v[0]) if len(v) == 1 else f"({', '.join(map(str, v))})"

    return f"x/255, then (x - {values(mean)}) / {values(std)} per channel"


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise LinpathError(f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))})")
    return DATASETS[name]


def load(name: str, root: str | Path | None, image_size: int = 0) -> Source:
    """The named data set from `root` (default: $LINPATH_DATA, else the cache folder)."""
    loader = info(name).load
    root = Path(root).expanduser() if root else default_data_root()
    if root.exists() and not root.is_dir():
        raise LinpathError(
            f"the data root {root} is a file, not a folder (set --data-root or $LINPATH_DATA to a folder)"
        )
    source = loader(root)
    if image_size and hasattr(source, "image_size"):  # the ImageNet pipeline's crop size
        source.image_size = image_size
    return source


__all__ = [
    "DATASETS",
    "NORMALIZATION",
    "normalization_text",
    "DatasetInfo",
    "info",
    "load",
    "default_data_root",
]
