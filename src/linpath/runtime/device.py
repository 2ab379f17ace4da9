"""The device and the arithmetic: one place that knows the precisions and how to resolve a device."""

from __future__ import annotations

import contextlib
import os

import torch

from linpath.errors import LinpathError

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise LinpathError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast for "bf16", nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_device(device: str) -> torch.device:
    """auto (CUDA if present), cpu, cuda, cuda:N: a torch.device, or one line saying why not."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LinpathError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise LinpathError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on `device` (host: MemAvailable), or None where unknown."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(nbytes: int, device: torch.device, what: str, share: float = 0.5) -> None:
    """Refuse (one line) when `nbytes` exceed `share` of the memory free on `device`."""
    free = available_memory(device)
    if free is not None and nbytes > share * free:
        raise LinpathError(
            f"{what} would need {nbytes / 2**30:.1f} GiB, more than {share:.0%} of the "
            f"{free / 2**30:.1f} GiB free on {device.type}; ask for less"
        )
