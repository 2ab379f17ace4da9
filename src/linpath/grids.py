"""Grids of interpolation positions x.

`uniform` is the paper's: N evenly spaced points in [a, b], both ends included (a < 0 or b > 1
extrapolate beyond the endpoints).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import LinpathError


@dataclass(frozen=True)
class Grid:
    kind: str = "uniform"
    points: int = 100
    start: float = 0.0
    stop: float = 1.0

    def __post_init__(self):
        if self.kind not in ("uniform",):
            raise LinpathError(f"unknown grid {self.kind!r} (known: uniform)")
        if not isinstance(self.points, int) or self.points < 2:
            raise LinpathError(f"a grid needs at least 2 points, got {self.points}")
        if not (np.isfinite(self.start) and np.isfinite(self.stop) and self.start < self.stop):
            raise LinpathError(f"grid range must be finite and increasing, got [{self.start}, {self.stop}]")

    def xs(self) -> list[float]:
        return [float(x) for x in np.linspace(self.start, self.stop, self.points)]

    @property
    def key(self) -> str:
        return f"{self.kind}{self.points}" + ("" if (self.start, self.stop) == (0.0, 1.0) else f"[{self.start:g},{self.stop:g}]")
