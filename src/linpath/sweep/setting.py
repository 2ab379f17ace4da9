"""A sweep setting: everything besides the checkpoints that decides a sweep's numbers. Its key
names the folder its item files live in, so different settings never share results."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from linpath.engine.bn_stats import DEFAULT_BN_BATCHES, check_bn_policy
from linpath.engine.params import check_hold, spec_terms
from linpath.errors import LinpathError
from linpath.runtime.device import check_precision
from linpath.sweep.grids import Grid

SPLITS = ("test", "train")


def _positive_int(value, flag: str, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise LinpathError(f"{flag} must be a positive integer, got {value}")


@dataclass(frozen=True)
class SweepSetting:
    """What decides the numbers of a sweep, besides the checkpoints."""

    split: str = "test"
    bn: str = "interpolate"
    grid: Grid = field(default_factory=Grid)
    precision: str = "fp32"
    bn_batches: int = DEFAULT_BN_BATCHES  # recompute only: training batches per point
    eval_examples: int = 0  # a class-stratified subset of the split; 0: all of it
    params: str = ""  # a parameter subset (engine/params.py); "": every tensor moves
    hold: str = "end"  # where the tensors outside `params` stay

    def __post_init__(self):
        if self.split not in SPLITS:
            raise LinpathError(f"unknown split {self.split!r} (known: {', '.join(SPLITS)})")
        check_bn_policy(self.bn)
        check_precision(self.precision)
        _positive_int(self.bn_batches, "--bn-batches")
        _positive_int(self.eval_examples, "--eval-examples", allow_zero=True)
        check_hold(self.hold)
        if self.params:
            spec_terms(self.params)
        elif self.hold != "end":
            raise LinpathError("--hold only applies with --params (without it every tensor moves)")

    @property
    def key(self) -> str:
        """The sweep folder's name: everything that changes the numbers."""
        bn = f"recompute{self.bn_batches}" if self.bn == "recompute" else self.bn
        subset = f"-n{self.eval_examples}" if self.eval_examples else ""
        params = f"-params[{params_slug(self.params)}]-hold{self.hold}" if self.params else ""
        return f"{self.split}-{bn}-{self.grid.key}-{self.precision}{subset}{params}"


def params_slug(spec: str) -> str:
    """A parameter subset as a folder name's part: the spec itself where it is plain
    (letters, digits, '.', '_', ',' and 'layer:' written 'layer='), else its plain characters
    and a digest of the spec, so two specs never share a folder."""
    slug = spec.replace("layer:", "layer=")
    if "=" not in spec and re.fullmatch(r"[A-Za-z0-9._,=]+", slug):
        return slug
    digest = hashlib.sha256(spec.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9._,=]", "_", slug) + "-" + digest


def parse_steps(text: str | None) -> list[int] | None:
    """--from-steps: '0,16,1024' -> [0, 16, 1024]; empty -> None (every kept t)."""
    if text is None or text == "":
        return None
    try:
        return sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise LinpathError(
            f"--from-steps takes iterations separated by commas (e.g. 0,16,1024), got {text!r}"
        ) from None
