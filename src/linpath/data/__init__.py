"""Data sets by name: one registry entry per data set holds its loader and the facts other
stages need (classes, training examples, input shape), so they never restate them.

Each loader returns a `Source` (see source.py). The registry imports no torch: a loader imports
its module when called, so the spec's check of a data set's name, and the commands that only
read names (`linpath presets`, `--help`), stay light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from linpath.data.locations import default_data_root
from linpath.data.normalization import NORMALIZATION, normalization_text
from linpath.errors import LinpathError

if TYPE_CHECKING:
    from linpath.data.source import Source


def _load_mnist(root: Path) -> Source:
    from linpath.data import mnist

    return mnist.load(root)


def _load_cifar10(root: Path) -> Source:
    from linpath.data import cifar10

    return cifar10.load(root)


def _load_imagenet(root: Path) -> Source:
    from linpath.data import imagenet

    return imagenet.load(root)


@dataclass(frozen=True)
class DatasetInfo:
    load: Callable[[Path], Source]
    num_classes: int
    num_train_examples: int  # the full data set's (OpenLTH's iterations per epoch come from it)
    input_shape: tuple[int, int, int]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(_load_mnist, 10, 60000, (1, 28, 28)),
    "cifar10": DatasetInfo(_load_cifar10, 10, 50000, (3, 32, 32)),
    "imagenet": DatasetInfo(_load_imagenet, 1000, 1281167, (3, 224, 224)),
}


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
