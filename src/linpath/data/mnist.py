"""MNIST from the four canonical IDX files in <data-root>/mnist/ (gzipped or not).

Missing files are downloaded from public mirrors (checksums verified); with no network the
error names the missing files, the folder, and --data-root.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from linpath.data.download import fetch
from linpath.data.idx import parse_idx, read_bytes
from linpath.data.memory import InMemorySource
from linpath.data.normalization import NORMALIZATION
from linpath.data.source import Split
from linpath.errors import LinpathError

MEAN, STD = NORMALIZATION["mnist"]

# name -> (number of dimensions, expected count, MD5 of the uncompressed file)
FILES = {
    "train-images-idx3-ubyte": (3, 60000, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (1, 60000, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (3, 10000, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (1, 10000, "27ae3e4e09519cfbb04c329615203637"),
}

MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist",
    "https://storage.googleapis.com/cvdf-datasets/mnist",
]


def _mirrors() -> list[str]:
    env = os.environ.get("LINPATH_MNIST_MIRRORS")
    if not env:
        return MIRRORS
    mirrors = [m.strip() for m in env.split(",") if m.strip()]
    bad = [m for m in mirrors if not m.lower().startswith(("http://", "https://", "file://"))]
    if bad or not mirrors:
        raise LinpathError(
            f"LINPATH_MNIST_MIRRORS must list base URLs (http://, https:// or file://) separated by "
            f"commas, got {env!r}"
        )
    return mirrors


def find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def ensure_files(folder: Path, files: dict = FILES, mirrors: list[str] | None = None) -> dict[str, Path]:
    """Return {stem: path}, downloading missing files; one clear error if that fails."""
    found = {stem: find_file(folder, stem) for stem in files}
    missing = [stem for stem, path in found.items() if path is None]
    if missing:
        problems = []
        for stem in missing:
            try:
                found[stem] = fetch(stem + ".gz", folder, mirrors or _mirrors(), files[stem][2])
            except LinpathError as e:
                problems.append(str(e))
        if problems:
            names = ", ".join(s + "[.gz]" for s in missing if found[s] is None)
            raise LinpathError(
                f"MNIST files missing in {folder}: {names}; download failed ({problems[0]}). "
                f"Put the IDX files there or name the folder that holds mnist/ with --data-root"
            )
    return found


def read_split(images_path: Path, labels_path: Path, count: int) -> Split:
    images = parse_idx(read_bytes(images_path), images_path, 3)
    labels = parse_idx(read_bytes(labels_path), labels_path, 1)
    if images.shape[1:] != (28, 28):
        raise LinpathError(f"{images_path} holds images of shape {images.shape[1:]}, expected (28, 28)")
    if len(images) != count:
        raise LinpathError(f"{images_path} holds {len(images)} images, expected {count}")
    if len(labels) != count:
        raise LinpathError(f"{labels_path} holds {len(labels)} labels, expected {count}")
    if labels.max() > 9:
        raise LinpathError(f"{labels_path} has label {int(labels.max())}, outside 0-9")
    return Split(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype("int64")),
    )


def load(root: Path, files: dict = FILES, mirrors: list[str] | None = None) -> InMemorySource:
    folder = Path(root) / "mnist"
    paths = ensure_files(folder, files, mirrors)
    train = read_split(
        paths["train-images-idx3-ubyte"],
        paths["train-labels-idx1-ubyte"],
        files["train-images-idx3-ubyte"][1],
    )
    test = read_split(
        paths["t10k-images-idx3-ubyte"], paths["t10k-labels-idx1-ubyte"], files["t10k-images-idx3-ubyte"][1]
    )
    return InMemorySource("mnist", train, test, MEAN, STD, num_classes=10)
