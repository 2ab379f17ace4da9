"""Reading an image-folder tree {split}/<class>/<image>, from a folder or from inside a tar archive.

Both CIFAR-10 (as a JPEG copy) and ImageNet come in this layout. Classes are the sorted folder
names of the training split, so labels agree with torchvision's ImageFolder (and, for CIFAR-10,
with the canonical label order, which is alphabetical).
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from linpath.errors import LinpathError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclass
class Tree:
    """An image-folder tree: for each split, (class name, file path or the file's bytes)."""

    where: Path
    splits: dict[str, list[tuple[str, Path | bytes]]]

    def classes(self, split: str = "train") -> list[str]:
        return sorted({c for c, _ in self.splits.get(split, [])})

    def split(self, names: tuple[str, ...]) -> tuple[str, list[tuple[str, Path | bytes]]]:
        """The first of `names` present, e.g. ("val", "test"); an error naming them if none is."""
        for name in names:
            if self.splits.get(name):
                return name, self.splits[name]
        raise LinpathError(
            f"{self.where} has no {'/'.join(names)} split (found: {', '.join(sorted(self.splits)) or 'none'})"
        )

    def labeled(self, split_names: tuple[str, ...], classes: list[str]) -> list[tuple[int, Path | bytes]]:
        name, items = self.split(split_names)
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({c for c, _ in items} - set(index))
        if unknown:
            raise LinpathError(
                f"{self.where}: split {name} has classes not in train: {', '.join(unknown[:5])}"
            )
        return [(index[c], src) for c, src in items]


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _split_parts(parts: tuple[str, ...], splits: tuple[str, ...]):
    """(prefix, split, class, file) if `parts` ends in <split>/<class>/<image file>."""
    if len(parts) < 3 or parts[-3] not in splits or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return None
    return parts[:-3], parts[-3], parts[-2], parts[-1]


def find_tree_root(folder: Path, splits: tuple[str, ...]) -> Path | None:
    """`folder` if it holds a split folder, else its only subfolder that does (an archive's top)."""
    if any((folder / s).is_dir() for s in splits):
        return folder
    subs = (
        [p for p in sorted(folder.iterdir()) if p.is_dir() and any((p / s).is_dir() for s in splits)]
        if folder.is_dir()
        else []
    )
    return subs[0] if len(subs) == 1 else None


def read_folder(folder: Path, splits: tuple[str, ...]) -> Tree:
    root = find_tree_root(folder, splits)
    if root is None:
        raise LinpathError(f"{folder} holds no image-folder tree ({'|'.join(splits)})/<class>/<image>")
    out: dict[str, list] = {}
    for split in splits:
        d = root / split
        if not d.is_dir():
            continue
        items = []
        for class_dir in sorted(p for p in d.iterdir() if p.is_dir()):
            items.extend(
                (class_dir.name, f)
                for f in sorted(class_dir.iterdir())
                if f.is_file() and f.name.lower().endswith(IMAGE_SUFFIXES)
            )
        out[split] = items
    return Tree(root, out)


def read_archive(path: Path, splits: tuple[str, ...]) -> Tree:
    """Every image of the tree inside a tar(.gz), its bytes held in memory (fine for CIFAR-10 and
    small subsets; extract a full ImageNet archive instead)."""
    out: dict[str, list] = {}
    prefixes = set()
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parsed = _split_parts(tuple(Path(member.name).parts), splits)
                if parsed is None:
                    continue
                prefix, split, cls, _ = parsed
                prefixes.add(prefix)
                f = tar.extractfile(member)
                out.setdefault(split, []).append((member.name, cls, f.read()))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise LinpathError(
            f"cannot read archive {path}: {e or type(e).__name__} (truncated or corrupt; fetch it again)"
        ) from None
    if not out:
        raise LinpathError(f"archive {path} holds no image-folder tree ({'|'.join(splits)})/<class>/<image>")
    if len(prefixes) > 1:
        raise LinpathError(
            f"archive {path} holds several image-folder trees: {', '.join('/'.join(p) or '.' for p in sorted(prefixes))}"
        )
    return Tree(
        path, {s: [(c, b) for _, c, b in sorted(items, key=lambda t: t[0])] for s, items in out.items()}
    )


def read_tree(path: Path, splits: tuple[str, ...]) -> Tree:
    return read_archive(path, splits) if is_archive(path) else read_folder(path, splits)
