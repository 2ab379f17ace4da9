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


def read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        return raw
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
