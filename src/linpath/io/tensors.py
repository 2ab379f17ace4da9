"""Tensor files: saved atomically, loaded with weights_only=True (tensors and plain
containers, never code)."""

from __future__ import annotations

import pickle
import re
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
    if path.is_dir():
        raise LinpathError(folder_refusal(path))
    if not path.is_file():
        raise LinpathError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):  # neither a zip nor a legacy pickle
        raise LinpathError(f"corrupt or truncated checkpoint {path}: not a file written by torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise LinpathError(
            f"refusing to load {path}: it is not plain tensor data ({pickle_reason(str(e))}); linpath loads "
            "checkpoints weights-only and never runs code from one: save the weights alone (a state dict, or safetensors)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LinpathError(f"corrupt or truncated checkpoint {path}: {first}") from None


def folder_refusal(folder: Path) -> str:
    """What to say of a folder given where a checkpoint file is expected (a model folder is read
    as one only from safetensors: hf_folder.py)."""
    if (folder / "pytorch_model.bin").is_file() or any(folder.glob("pytorch_model*.bin")):
        return (
            f"{folder} holds a pickle-based pytorch_model.bin, which linpath does not read as a model folder "
            "(it reads model.safetensors, or shards listed in model.safetensors.index.json): convert it to "
            "safetensors, e.g. with transformers' AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder)"
        )
    return f"{folder} is a folder, not a checkpoint file (and holds no model.safetensors)"


_GLOBAL = re.compile(
    r"unsupported (?:global: )?GLOBAL ([\w.]+)(?: whose module ([\w.]+) is blocked)?", re.IGNORECASE
)


def pickle_reason(message: str) -> str:
    """The reason in torch's weights-only refusal, without its advice (re-running with
    weights_only=False, allowlisting the global): "unsupported global posix.system (module
    posix blocked)"; else its first line that is not advice."""
    found = _GLOBAL.search(message)
    if found:
        blocked = f" (module {found.group(2)} blocked)" if found.group(2) else ""
        return f"unsupported global {found.group(1)}{blocked}"
    advice = ("weights_only", "safe_globals", "trust", "documentation", "two options", "loaded")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return next((line for line in lines if not any(a in line for a in advice)), "unsafe content")


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
