"""Tensor files: saved atomically, loaded with weights_only=True (tensors and plain
containers, never code)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from linpath.errors import LinpathError
from linpath.io.checkpoints import find_state, is_safetensors, load_safetensors
from linpath.io.files import atomic_write


def save_tensors(path: Path, obj) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def load_tensors(path: Path) -> object:
    """torch.load with weights_only=True, with one-line errors for missing, corrupt or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise LinpathError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):  # neither a zip nor a legacy pickle
        raise LinpathError(f"corrupt or truncated checkpoint {path}: not a file written by torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        # torch's message: a paragraph of advice, then the reason ("Unsupported global: ...")
        first = next(
            (line for line in lines if "Unsupported" in line), lines[0] if lines else "unsafe content"
        )
        raise LinpathError(f"refusing to load {path}: it is not plain tensor data ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LinpathError(f"corrupt or truncated checkpoint {path}: {first}") from None


def load_state_dict(path: Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file, written by linpath or by other tools: a plain state
    dict, a wrapper ({"state_dict": ...}, a Lightning .ckpt, {"model": ...}), a .safetensors
    file, or the entry at `key` (see io/checkpoints.py). Keys are as saved (see match_keys)."""
    path = Path(path)
    if path.is_file() and is_safetensors(path):
        return find_state(load_safetensors(path), str(path), key)
    return find_state(load_tensors(path), str(path), key)


def nonfinite_problem(state: dict[str, torch.Tensor]) -> str | None:
    """'tensor 'fc.weight' has 3 NaN values' for the first tensor holding NaN or inf, else None."""
    for name, tensor in state.items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        nans = int(torch.isnan(tensor).sum())
        infs = int((~finite).sum()) - nans
        parts = [
            f"{n} {kind} value{'s' if n != 1 else ''}" for n, kind in ((nans, "NaN"), (infs, "inf")) if n
        ]
        return f"tensor {name!r} has {' and '.join(parts)}"
    return None


def check_finite(state: dict[str, torch.Tensor], path: Path | str) -> dict[str, torch.Tensor]:
    """Refuse a state holding NaN or inf, naming the file and the tensor."""
    if problem := nonfinite_problem(state):
        raise LinpathError(
            f"{Path(path).name}: {problem} ({path}); pass --allow-nonfinite to evaluate it anyway"
        )
    return state


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The tensor's raw bytes in row-major order, whatever its dtype (bfloat16 has no numpy
    type), for digests of states and data (b"" for an empty tensor)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
