"""CIFAR-10 from <data-root>/cifar10/, in any of its usual forms, decoded once into a uint8 cache.

Accepted, in this order: the extracted `cifar-10-batches-py/`, the canonical
`cifar-10-python.tar.gz`, an image-folder tree {train,test}/<class>/*, or one .tar(.gz) archive
of either. Decoding 60,000 JPEGs takes a while, so the result (uint8 tensors, 180 MB) is cached
under the cache folder ($LINPATH_CACHE, else ~/.cache/linpath), keyed by the source's paths,
sizes and modification times. Augmentation (random crop with 4-pixel zero padding, horizontal
flip) runs batched on the training device from a generator seeded by (seed, step).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from linpath.data.imagefolder import is_archive, read_tree
from linpath.data.locations import cache_root
from linpath.data.memory import InMemorySource
from linpath.data.normalization import NORMALIZATION
from linpath.data.source import Split
from linpath.errors import LinpathError
from linpath.io.tensors import save_tensors

# OpenLTH normalizes CIFAR-10 with ImageNet's statistics.
MEAN, STD = NORMALIZATION["cifar10"]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
COUNTS = {"train": 50000, "test": 10000}
CANONICAL = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CACHE_VERSION = 1
HINT = (
    f"put {CANONICAL} (https://www.cs.toronto.edu/~kriz/{CANONICAL}), {BATCHES_DIR}/ or an image-folder tree "
    "{train,test}/<class>/* (or a .tar.gz of one) there, or name the folder holding cifar10/ with --data-root"
)


def find_source(folder: Path) -> Path:
    """The file or folder to read CIFAR-10 from, in the order of the module docstring."""
    if not folder.is_dir():
        raise LinpathError(f"no CIFAR-10 folder at {folder}: {HINT}")
    if (folder / BATCHES_DIR).is_dir():
        return folder / BATCHES_DIR
    if (folder / CANONICAL).is_file():
        return folder / CANONICAL
    if any((p / "train").is_dir() for p in [folder, *folder.iterdir()] if p.is_dir()):
        return folder
    archives = sorted(p for p in folder.iterdir() if is_archive(p))
    if len(archives) == 1:
        return archives[0]
    if len(archives) > 1:
        raise LinpathError(
            f"several archives in {folder} ({', '.join(p.name for p in archives)}); keep one, or {HINT}"
        )
    raise LinpathError(f"no CIFAR-10 data in {folder}: {HINT}")


def _fingerprint(source: Path) -> str:
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    h = hashlib.sha256(f"v{CACHE_VERSION}|{source.resolve()}".encode())
    for p in files:
        st = p.stat()
        h.update(f"|{p.relative_to(source) if p != source else ''}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the canonical batches (dicts of numpy arrays and lists) and nothing else, so a
    tampered file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")


def _parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:  # any malformed pickle: name the file
        raise LinpathError(f"{where} is not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if len(data) != len(labels):
        raise LinpathError(f"{where} has {len(data)} images but {len(labels)} labels")
    return data, labels


def _read_batches(source: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The canonical python batches, from the extracted folder or the tar.gz."""
    raw: dict[str, bytes] = {}
    wanted = set(TRAIN_BATCHES) | {"test_batch"}
    if source.is_dir():
        for name in wanted:
            if not (source / name).is_file():
                raise LinpathError(f"{source / name} is missing: {HINT}")
            raw[name] = (source / name).read_bytes()
    else:
        try:
            with tarfile.open(source, "r:*") as tar:
                for member in tar:
                    if member.isfile() and Path(member.name).name in wanted:
                        raw[Path(member.name).name] = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise LinpathError(
                f"cannot read archive {source}: {e or type(e).__name__} (truncated or corrupt; fetch it again)"
            ) from None
        missing = sorted(wanted - set(raw))
        if missing:
            raise LinpathError(f"archive {source} lacks {', '.join(missing)}: {HINT}")
    parts = [_parse_batch(raw[n], f"{source}/{n}") for n in TRAIN_BATCHES]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return {"train": train, "test": _parse_batch(raw["test_batch"], f"{source}/test_batch")}


def _decode(item: bytes | Path, where: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(item) if isinstance(item, bytes) else item) as img:
            arr = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise LinpathError(f"cannot decode an image in {where}: {e}") from None
    if arr.shape != (32, 32, 3):
        raise LinpathError(
            f"{where} holds an image of shape {arr.shape[:2]}, expected 32x32 (is this CIFAR-10?)"
        )
    return arr


def _read_image_folder(source: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    tree = read_tree(source, ("train", "test"))
    classes = tree.classes("train")
    if classes != CLASSES:
        raise LinpathError(
            f"{tree.where} has classes {', '.join(classes[:12])}; expected the 10 CIFAR-10 classes {', '.join(CLASSES)}"
        )
    out = {}
    # Pillow releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for split in ("train", "test"):
            items = tree.labeled((split,), classes)
            images = list(pool.map(lambda it: _decode(it[1], tree.where), items, chunksize=256))
            out[split] = (
                np.stack(images).transpose(0, 3, 1, 2).copy()
                if images
                else np.zeros((0, 3, 32, 32), np.uint8),
                np.array([label for label, _ in items], dtype=np.int64),
            )
    return out


def _check(arrays: dict, where: Path, counts: dict) -> None:
    for split, expected in counts.items():
        images, labels = arrays[split]
        if len(images) != expected or len(labels) != expected:
            raise LinpathError(
                f"{where}: the {split} split has {len(images)} images and {len(labels)} labels, expected {expected}"
            )
        if tuple(images.shape[1:]) != (3, 32, 32):
            raise LinpathError(
                f"{where}: {split} images have shape {tuple(images.shape[1:])}, expected (3, 32, 32)"
            )
        if labels.min() < 0 or labels.max() > 9 or len(set(labels.tolist())) != 10:
            raise LinpathError(f"{where}: {split} labels are not the 10 classes 0-9")


def _save_cache(path: Path, arrays: dict) -> None:
    """Best effort: an unwritable cache folder only costs decoding again next time."""
    try:
        save_tensors(
            path,
            {
                f"{s}_{k}": torch.from_numpy(np.ascontiguousarray(a))
                for s, (i, l) in arrays.items()
                for k, a in (("images", i), ("labels", l))
            },
        )
    except (LinpathError, OSError):
        pass


def _load_cache(path: Path) -> dict | None:
    try:
        d = torch.load(path, weights_only=True)
        return {s: (d[f"{s}_images"].numpy(), d[f"{s}_labels"].numpy()) for s in ("train", "test")}
    except Exception:  # a stale or partial cache is decoded again
        return None


def read_arrays(
    folder: Path, counts: dict = COUNTS, use_cache: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images (N,3,32,32) uint8, labels (N,) int64)}, from the cache when it is fresh."""
    source = find_source(folder)
    cache = cache_root() / f"cifar10-{_fingerprint(source)}.pt"
    arrays = _load_cache(cache) if use_cache and cache.is_file() else None
    if arrays is None:
        is_batches = (
            source.name == BATCHES_DIR
            or source.name == CANONICAL
            or (is_archive(source) and _has_batches(source))
        )
        arrays = _read_batches(source) if is_batches else _read_image_folder(source)
        _check(arrays, source, counts)
        if use_cache:
            _save_cache(cache, arrays)
    _check(arrays, source, counts)
    return arrays


def _has_batches(archive: Path) -> bool:
    """Whether an archive of unknown name holds the python batches (seen in its first members)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for i, member in enumerate(tar):
                if Path(member.name).name in ("data_batch_1", "test_batch", "batches.meta"):
                    return True
                if i > 20:
                    return False
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise LinpathError(
            f"cannot read archive {archive}: {e or type(e).__name__} (truncated or corrupt; fetch it again)"
        ) from None
    return False


class CropFlip:
    """Random crop with `padding` zero pixels on each side, then a random horizontal flip, for a
    whole batch as one gather. Draws come from the given CPU generator, results are on x's device.

    `draw` and `apply` are the two halves of a call, so that a loop can draw a whole epoch's
    parameters ahead and apply them on the device without a host copy per step (data/memory.py's
    epoch plans); `augment(x, gen)` is `apply(x, *draw(len(x), gen))` with the draws moved to x's device."""

    def __init__(self, padding: int):
        self.padding = padding

    def draw(self, b: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(shifts (2, b) int64 in [0, 2p], flips (b,) bool), on the CPU; the batch is the last dimension."""
        shifts = torch.randint(0, 2 * self.padding + 1, (2, b), generator=gen)
        flips = torch.rand(b, generator=gen) < 0.5
        return shifts, flips

    def apply(self, x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        padding = self.padding
        padded = F.pad(x, (padding,) * 4).flatten(2)  # (b, c, (h+2p)(w+2p))
        ar_h, ar_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        rows = shifts[0, :, None, None] + ar_h[:, None]
        cols = shifts[1, :, None, None] + torch.where(flips[:, None, None], w - 1 - ar_w, ar_w)
        index = (rows * (w + 2 * padding) + cols).view(b, 1, h * w).expand(b, c, h * w)
        return padded.gather(2, index).view(b, c, h, w)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        shifts, flips = self.draw(len(x), gen)
        return self.apply(x, shifts.to(x.device), flips.to(x.device))


def crop_flip(padding: int) -> CropFlip:
    """The CIFAR augmentation (see CropFlip)."""
    return CropFlip(padding)


def load(root: Path, counts: dict = COUNTS) -> InMemorySource:
    arrays = read_arrays(Path(root) / "cifar10", counts)
    splits = {s: Split(torch.from_numpy(i), torch.from_numpy(l)) for s, (i, l) in arrays.items()}
    return InMemorySource(
        "cifar10", splits["train"], splits["test"], MEAN, STD, num_classes=10, augment_fn=crop_flip(4)
    )
