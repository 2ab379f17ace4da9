"""Checkpoints as other tools write them, read into one plain state dict.

Researchers bring files from their own training code: a bare state dict, a dict wrapping it
({"state_dict": ..., "epoch": 3}, "model_state_dict", "model"), a PyTorch Lightning .ckpt,
a DDP model's "module."-prefixed keys, or a .safetensors file. `find_state` finds the state
dict inside (or at `key`, a dotted path, for anything else; io.tensors.load_state_dict reads
files with it); `match_keys` then strips the prefix the model's own keys do not have, where
those are known. Pickles are loaded weights-only (io.tensors), never code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from linpath.errors import LinpathError

WRAPPERS = ("state_dict", "model_state_dict", "model")  # where trainers put the state dict
MAX_PREFIX_DEPTH = 3  # "model.module." is two; deeper wrappers are rare


def is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A .safetensors file (a header and raw tensors: nothing to unpickle)."""
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LinpathError(f"corrupt or truncated safetensors file {path}: {first}") from None


def is_safetensors(path: Path) -> bool:
    """By the name, or by the header: an 8-byte length, then JSON (a renamed file still reads)."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not head.startswith((b"PK", b"\x80"))


def _at_key(obj: object, key: str, where: str) -> object:
    """The entry at a dotted path; a key that itself holds dots is matched whole first."""
    parts = key.split(".")
    while parts:
        if not isinstance(obj, Mapping):
            raise LinpathError(f"{where}: key {key!r}: {'.'.join(parts)!r} is inside a {type(obj).__name__}")
        for n in range(len(parts), 0, -1):
            name = ".".join(parts[:n])
            if name in obj:
                obj, parts = obj[name], parts[n:]
                break
        else:
            shown = ", ".join(repr(k) for k in list(obj)[:8])
            raise LinpathError(f"{where}: key {key!r}: no entry {parts[0]!r} (entries: {shown})")
    return obj


def find_state(obj: object, where: str, key: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint: at `key` when given, else the object itself or
    its first WRAPPERS entry holding one (nested wrappers too, e.g. {"model": {"state_dict": ...}})."""
    top = obj = _at_key(obj, key, where) if key else obj
    for _ in range(3):
        if is_state_dict(obj):
            return dict(obj)
        inner = (
            next((obj[w] for w in WRAPPERS if isinstance(obj.get(w), Mapping)), None)
            if isinstance(obj, Mapping)
            else None
        )
        if inner is None:
            break
        obj = inner
    if isinstance(top, Mapping):
        shown = ", ".join(repr(k) for k in list(top)[:8]) or "none"
        raise LinpathError(
            f"{where} is not a state dict (a mapping of names to tensors) and holds none under "
            f"{', '.join(map(repr, WRAPPERS))} (its entries: {shown}); name the entry with --key (key= in the API)"
        )
    raise LinpathError(f"{where} is not a state dict: it holds a {type(top).__name__}")


def _prefixes(keys: Iterable[str]) -> list[str]:
    """Candidate prefixes: the first 1..MAX_PREFIX_DEPTH dotted parts of each key, shortest first."""
    found = set()
    for k in keys:
        parts = k.split(".")
        for n in range(1, min(len(parts), MAX_PREFIX_DEPTH + 1)):
            found.add(".".join(parts[:n]) + ".")
    return sorted(found, key=lambda p: (p.count("."), p))


def match_keys(state: dict[str, torch.Tensor], own: Iterable[str]) -> dict[str, torch.Tensor]:
    """`state` with the prefix removed that makes its keys exactly the model's (`own`):
    "module." of DDP, "model." of a Lightning module, ...; entries outside the prefix (say a
    Lightning module's loss weights) are dropped then. Unchanged when no prefix fits: the
    caller's check_compatible then names the first key that differs."""
    own = list(own)
    wanted = set(own)
    if set(state) == wanted:
        return state
    for prefix in _prefixes(state):
        inner = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if set(inner) == wanted:
            return {k: inner[k] for k in own}
    return state
