"""Data sets, by name. Each loader returns a `Source` (see memory.py): training batches that
are a pure function of (seed, step), and evaluation splits preloaded once on the device."""

from __future__ import annotations

import os
from pathlib import Path

from . import cifar10, imagenet, mnist

# name -> loader(root: Path) -> Source
DATASETS = {
    "mnist": mnist.load,
    "cifar10": cifar10.load,
    "imagenet": imagenet.load,
}


def default_data_root() -> Path:
    """--data-root, else $LINPATH_DATA, else a cache folder in the user's home."""
    env = os.environ.get("LINPATH_DATA")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "linpath" / "data"


def load(name: str, root: str | Path | None, image_size: int = 0):
    from ..errors import LinpathError

    if name not in DATASETS:
        raise LinpathError(f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))})")
    root = Path(root).expanduser() if root else default_data_root()
    if root.exists() and not root.is_dir():
        raise LinpathError(f"the data root {root} is a file, not a folder (set --data-root or $LINPATH_DATA to a folder)")
    source = DATASETS[name](root)
    if image_size and hasattr(source, "image_size"):  # the ImageNet pipeline's crop size
        source.image_size = image_size
    return source
