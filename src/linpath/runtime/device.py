"""The device and the arithmetic: one place that knows the precisions and how to resolve a device."""

from __future__ import annotations

import contextlib

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
