"""JSON read safely: the one place linpath parses a JSON file or line.

Every JSON file a run folder or a model folder holds (spec.json, provenance.json, merged.json,
audit/cache.json, data.json, a safetensors index, a JSONL line) can be damaged or written by
hand. json.loads raises ValueError for bad syntax, UnicodeDecodeError for bad bytes and
RecursionError for deep nesting (`[[[[...`); all of them here become one LinpathError line
naming the file, never a traceback. Callers that treat a bad file as absent (a cache) catch
LinpathError.
"""

from __future__ import annotations

import json
from pathlib import Path

from linpath.errors import LinpathError


def _reason(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def parse_json(text: str | bytes, where: str) -> object:
    """The value `text` holds; one line naming `where` (a file, file:line) when it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise LinpathError(f"cannot read {where}: not valid JSON ({_reason(e)})") from None


def read_json(path: str | Path, expect: type | None = None) -> object:
    """The value a JSON file holds (read as bytes: UTF-8, UTF-16 or UTF-32 as json detects);
    with `expect` (dict, list) one line when the value is of another type."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LinpathError(f"cannot read {path}: {e.strerror or e}") from None
    value = parse_json(data, str(path))
    if expect is not None and not isinstance(value, expect):
        kind = {dict: "a JSON object", list: "a JSON array"}.get(expect, expect.__name__)
        raise LinpathError(f"{path}: not {kind} (it holds a {type(value).__name__})")
    return value
