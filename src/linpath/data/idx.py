"""Reading IDX files (the MNIST format), gzipped or not, with every check named.

An IDX file is a 4-byte magic (0, 0, type 0x08 = uint8, number of dimensions), one big-endian
uint32 per dimension, then the data. A mismatch anywhere is reported with the file's path.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from linpath.errors import LinpathError

MAX_BYTES = 1 << 32  # an IDX file's declared payload (MNIST's largest: 47 MB)


def _declared_size(head: bytes) -> int | None:
    """Bytes an IDX file of this header holds in all, or None if the header is not IDX."""
    if len(head) < 4 or head[:2] != b"\0\0":
        return None
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        return None
    size = 1
    for i in range(ndim):
        size *= int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big")
    return 4 + 4 * ndim + size


def _gunzip_bounded(path: Path) -> bytes:
    """Decompress at most what the IDX header inside declares (plus one byte, to see excess),
    so a small file that inflates to gigabytes (a gzip bomb) is refused, not read."""
    with gzip.open(path, "rb") as f:
        head = f.read(4)
        head += f.read(4 * head[3]) if len(head) == 4 else b""
        declared = _declared_size(head)
        if declared is None or declared > MAX_BYTES:
            # not IDX, or a header no MNIST file has: read a bounded prefix and let parse_idx
            # name what is wrong (the magic, or a payload shorter than declared)
            return head + f.read(1 << 20)
        data = head + f.read(declared - len(head) + 1)
    if len(data) > declared:
        raise LinpathError(
            f"{path} decompresses to more than the {declared} bytes its IDX header declares: corrupt or not an IDX file"
        )
    return data


def read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic == b"\x1f\x8b":
            return _gunzip_bounded(path)
        return path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise LinpathError(
            f"cannot read {path}: {e} (the file is truncated or corrupt; delete it and fetch it again)"
        ) from None


def parse_idx(data: bytes, path: Path, ndim: int) -> np.ndarray:
    """Parse uint8 IDX data with `ndim` dimensions; raise naming `path` on any mismatch."""
    if len(data) < 4 + 4 * ndim:
        raise LinpathError(f"{path} is too short to be an IDX file ({len(data)} bytes)")
    expected_magic = bytes([0, 0, 0x08, ndim])
    if data[:4] != expected_magic:
        raise LinpathError(
            f"{path} has IDX magic {data[:4].hex()}, expected {expected_magic.hex()} "
            f"(uint8, {ndim} dimensions): wrong or corrupt file"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = len(data) - 4 - 4 * ndim
    if payload != int(np.prod(shape)):
        raise LinpathError(
            f"{path} declares shape {shape} ({int(np.prod(shape))} bytes) but holds {payload} bytes: truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
