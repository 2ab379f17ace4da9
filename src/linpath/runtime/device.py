"""The device and the arithmetic: one place that knows the precisions and how to resolve a device.

torch is imported inside the functions that use it: the command line reads PRECISIONS to build
its help, and `linpath --help` or `linpath presets` should not pay for importing torch.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from linpath.errors import LinpathError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise LinpathError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast for "bf16"; IEEE fp32 for "fp32" (see exact_fp32)."""
    if precision == "bf16":
        import torch

        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return exact_fp32(device, precision)


def exact_fp32(device: torch.device, precision: str):
    """linpath's fp32 is IEEE fp32 on every device. PyTorch lets cuDNN convolutions use TF32 on
    Ampere and later GPUs by default (a 10-bit mantissa: about 1e-3 relative error), so CUDA
    fp32 results would differ from CPU ones by far more than rounding; for fp32 work on CUDA this
    turns TF32 off (convolutions and matmuls) for the duration of the block, and restores the
    flags after. Nothing for bf16 or on the CPU."""
    if precision != "fp32" or device.type != "cuda":
        return contextlib.nullcontext()
    return _no_tf32()


@contextlib.contextmanager
def _no_tf32():
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def resolve_device(device: str) -> torch.device:
    """auto (CUDA if present), cpu, cuda, cuda:N: a torch.device, or one line saying why not."""
    import torch

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
        import torch

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
