"""Fetching a file from a list of mirrors into place, with a checksum, atomically.

Only used when a data file is missing. The checksum is the MD5 of the *uncompressed* content,
because mirrors re-compress files and the published sums are of the raw data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from linpath.data.idx import read_bytes
from linpath.errors import LinpathError


def content_md5(path: Path) -> str:
    return hashlib.md5(read_bytes(path)).hexdigest()


def fetch(name: str, folder: Path, mirrors: list[str], md5: str | None, timeout: float = 30.0) -> Path:
    """Download `name` from the first mirror that serves it with the right checksum.

    Returns the path written; raises LinpathError if no mirror can be reached or none
    serves a file with the expected checksum.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    problems = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            got = content_md5(Path(tmp))
            if md5 is not None and got != md5:
                problems.append(f"{url}: checksum {got} != {md5}")
                continue
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, LinpathError, ValueError) as e:
            problems.append(f"{url}: {getattr(e, 'reason', e)}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise LinpathError(f"could not download {name}: " + "; ".join(problems))
