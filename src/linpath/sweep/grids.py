"""Grids of interpolation positions x, and their command-line syntax (`--grid`).

  uniform:N[:A:B]        N evenly spaced points in [A, B] (default [0, 1]), both ends included;
                         A < 0 or B > 1 extrapolate beyond the endpoints. The paper's is
                         uniform:100 (= --points 100).
  dense-end:N[:A:B]      N points, spacing shrinking quadratically towards B (x = A + (B-A)·
                         (1-(1-u)²), u uniform): the last gap is (B-A)/(N-1)², for the drop
                         near the optimum that the paper's grid missed for ResNet-50.
  dense-start:N[:A:B]    the mirror image, dense near A.
  adaptive[:N[:TOL[:A:B]]][:loss|error|both]
                         N uniform points (default 11), then repeatedly the two midpoints
                         beside each of the two highest local maxima of the chosen quantity
                         (default loss) until their neighbours are within TOL (default 0.01):
                         the maximum's location is then known to ±TOL. Typically 19-27 points
                         instead of 100. A peak narrower than the first grid's spacing can
                         hide between its points: raise N for such curves.
  values:X1,X2,...       explicit positions (strictly increasing); a bare list X1,X2,... too.

A grid is a value (frozen dataclass); its `key` names the sweep folder, so different grids
never share result files. The key is written and read back here only (Grid.key, grid_of_key).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from linpath.errors import LinpathError

KINDS = ("uniform", "dense-start", "dense-end", "adaptive", "values")
QUANTITIES = ("loss", "error", "both")
MAX_POINTS = 10_000  # a grid's positions, each a full evaluation of the split
MAX_ABS_X = 3.0e38  # weights are mixed in float32: |x| beyond its range overflows
REFINED_PEAKS = (
    2  # adaptive: refine the highest two local maxima, so a peak hidden behind a high end is found
)


def _top_local_maxima(values: list[float], k: int) -> list[int]:
    """Indices of the k highest local maxima (ends included), highest first."""
    n = len(values)
    peaks = [
        i
        for i in range(n)
        if (i == 0 or values[i] >= values[i - 1]) and (i == n - 1 or values[i] >= values[i + 1])
    ]
    return sorted(peaks, key=lambda i: -values[i])[:k]


@dataclass(frozen=True)
class Grid:
    kind: str = "uniform"
    points: int = 100
    start: float = 0.0
    stop: float = 1.0
    tol: float = 0.01  # adaptive only
    quantity: str = "loss"  # adaptive only
    values: tuple[float, ...] = ()  # values only
    max_points: int = 200  # adaptive only: a cap, in case the maximum keeps moving

    def __post_init__(self):
        if self.kind not in KINDS:
            raise LinpathError(f"unknown grid {self.kind!r} (known: {', '.join(KINDS)})")
        if self.kind == "values":
            v = self.values
            if not v:
                raise LinpathError("a grid of values needs at least one x")
            if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v):
                raise LinpathError(f"grid values must be finite numbers, got {', '.join(map(str, v))}")
            if len(v) > MAX_POINTS:
                raise LinpathError(f"a grid has at most {MAX_POINTS} points, got {len(v)}")
            if any(abs(x) > MAX_ABS_X for x in v):
                raise LinpathError(
                    f"grid values must lie within ±{MAX_ABS_X:g} (weights are mixed in float32), "
                    f"got {max(v, key=abs):g}"
                )
            if any(b <= a for a, b in zip(v, v[1:])):
                raise LinpathError(f"grid values must be strictly increasing, got {', '.join(map(str, v))}")
            return
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points < 2:
            raise LinpathError(f"a grid needs at least 2 points, got {self.points}")
        if self.points > MAX_POINTS:
            raise LinpathError(
                f"a grid has at most {MAX_POINTS} points (each one evaluates the whole split), got {self.points}"
            )
        if not (math.isfinite(self.start) and math.isfinite(self.stop) and self.start < self.stop):
            raise LinpathError(f"grid range must be finite and increasing, got [{self.start}, {self.stop}]")
        if max(abs(self.start), abs(self.stop)) > MAX_ABS_X:
            raise LinpathError(f"grid range must lie within ±{MAX_ABS_X:g} (weights are mixed in float32)")
        if self.kind == "adaptive":
            if not (math.isfinite(self.tol) and self.tol > 0):
                raise LinpathError(f"adaptive grid tolerance must be a positive number, got {self.tol}")
            if self.quantity not in QUANTITIES:
                raise LinpathError(f"adaptive grid refines loss, error or both, got {self.quantity!r}")

    def xs(self) -> list[float]:
        """The positions (for adaptive: the initial coarse grid)."""
        if self.kind == "values":
            return [float(x) for x in self.values]
        u = np.linspace(0.0, 1.0, self.points)
        if self.kind == "dense-end":
            u = 1.0 - (1.0 - u) ** 2
        elif self.kind == "dense-start":
            u = u**2
        x = self.start + (self.stop - self.start) * u
        x[0], x[-1] = self.start, self.stop
        return [float(v) for v in x]

    def run(self, evaluate: Callable[[list[float]], list]) -> tuple[list[float], list]:
        """Evaluate the grid with evaluate(xs) -> results (each with .loss and .error);
        returns (xs, results) sorted by x. Adaptive grids call evaluate once per round."""
        xs = self.xs()
        results = list(evaluate(xs))
        if self.kind != "adaptive":
            return xs, results
        done = dict(zip(xs, results))
        quantities = ("loss", "error") if self.quantity == "both" else (self.quantity,)
        while len(done) < self.max_points:
            order = sorted(done)
            new = set()
            for q in quantities:
                values = [getattr(done[x], q) for x in order]
                values = [v if math.isfinite(v) else -math.inf for v in values]
                for i in _top_local_maxima(values, REFINED_PEAKS):
                    for j in (i - 1, i + 1):
                        if 0 <= j < len(order) and abs(order[j] - order[i]) > self.tol:
                            new.add((order[i] + order[j]) / 2)
            new = sorted(x for x in new if x not in done)[: self.max_points - len(done)]
            if not new:
                break
            done.update(zip(new, evaluate(new)))
        order = sorted(done)
        return order, [done[x] for x in order]

    @property
    def key(self) -> str:
        if self.kind == "values":
            digest = hashlib.sha256(",".join(repr(float(x)) for x in self.values).encode()).hexdigest()[:8]
            return f"values{len(self.values)}-{digest}"
        span = "" if (self.start, self.stop) == (0.0, 1.0) else f"[{self.start:g},{self.stop:g}]"
        if self.kind == "adaptive":
            return f"adaptive{self.points}-tol{self.tol:g}-{self.quantity}{span}"
        return f"{self.kind}{self.points}{span}"


_FIXED_KEY = re.compile(
    r"^(?P<kind>uniform|dense-start|dense-end)(?P<n>\d+)(?:\[(?P<a>[^,\]]+),(?P<b>[^\]]+)\])?$"
)
_ADAPTIVE_KEY = re.compile(
    r"^adaptive(?P<n>\d+)-tol(?P<tol>[^-\[]+)-(?P<q>loss|error|both)(?:\[(?P<a>[^,\]]+),(?P<b>[^\]]+)\])?$"
)


def grid_of_key(key: str) -> tuple[Grid | None, bool]:
    """The grid a Grid.key names, and whether its positions are exact (False: the key rounds
    the range with %g, so x are to be compared with a tolerance); (None, False) when the key
    does not determine the grid (a values grid is named by a digest) or is no grid's key."""
    fixed, adaptive = _FIXED_KEY.match(key), _ADAPTIVE_KEY.match(key)
    found = fixed or adaptive
    if found is None:
        return None, False
    try:
        kw = {"kind": fixed.group("kind") if fixed else "adaptive", "points": int(found.group("n"))}
        if found.group("a") is not None:
            kw.update(start=float(found.group("a")), stop=float(found.group("b")))
        if adaptive:
            kw.update(tol=float(adaptive.group("tol")), quantity=adaptive.group("q"))
        grid = Grid(**kw)
    except (ValueError, LinpathError):  # a name that only looks like a key
        return None, False
    return grid, found.group("a") is None


def _number(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LinpathError(f"--grid {spec!r}: {what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise LinpathError(f"--grid {spec!r}: {what} must be finite, got {text!r}")
    return value


def _count(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LinpathError(
            f"--grid {spec!r}: the number of points must be an integer, got {text!r}"
        ) from None


def parse_grid(spec: str) -> Grid:
    """A Grid from its command-line form (see the module docstring)."""
    text = spec.strip()
    if not text:
        raise LinpathError("--grid is empty (e.g. uniform:100, dense-end:100, adaptive, values:0,0.5,1)")
    head, _, rest = text.partition(":")
    head = head.strip().lower()
    if head not in KINDS:
        if any(c.isdigit() for c in head):  # a bare list of values
            head, rest = "values", text
        else:
            raise LinpathError(f"--grid {spec!r}: unknown grid {head!r} (known: {', '.join(KINDS)})")
    if head == "values":
        items = [s.strip() for s in rest.replace(";", ",").split(",") if s.strip()]
        if not items:
            raise LinpathError(f"--grid {spec!r}: no points")
        return Grid(kind="values", values=tuple(_number(s, "each x", spec) for s in items))
    parts = [s.strip() for s in rest.split(":")] if rest else []
    quantity = "loss"
    if head == "adaptive" and parts and parts[-1].lower() in QUANTITIES:
        quantity = parts.pop().lower()
    if any(p == "" for p in parts):
        raise LinpathError(f"--grid {spec!r}: empty field")
    kw: dict = {"kind": head}
    if head == "adaptive":
        if len(parts) not in (0, 1, 2, 4):
            raise LinpathError(f"--grid {spec!r}: expected adaptive[:N[:TOL[:A:B]]][:loss|error|both]")
        kw.update(points=_count(parts[0], spec) if parts else 11, quantity=quantity)
        if len(parts) >= 2:
            kw["tol"] = _number(parts[1], "the tolerance", spec)
        range_parts = parts[2:]
    else:
        if len(parts) not in (1, 3):
            raise LinpathError(f"--grid {spec!r}: expected {head}:N or {head}:N:A:B")
        kw["points"] = _count(parts[0], spec)
        range_parts = parts[1:]
    if range_parts:
        kw.update(
            start=_number(range_parts[0], "the start A", spec),
            stop=_number(range_parts[1], "the end B", spec),
        )
    try:
        return Grid(**kw)
    except LinpathError as e:
        raise LinpathError(f"--grid {spec!r}: {e}") from None
