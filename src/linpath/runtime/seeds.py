"""Seeds derived from names, so that independent random streams never share a seed and
everything random is a pure function of (seed, what, step)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def derived_seed(*parts) -> int:
    """A 63-bit seed derived from its parts."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts, device: str | torch.device = "cpu") -> torch.Generator:
    import torch  # here, not above: derived_seed is used by light commands that need no torch

    return torch.Generator(device=device).manual_seed(derived_seed(*parts))
