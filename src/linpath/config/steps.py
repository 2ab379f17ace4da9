"""Step strings ("40ep", "18760it", "2ep100it") and the paper's checkpoint schedule.

A step is a number of SGD updates. Strings in epochs only become iterations once the
data set's iterations per epoch are known, so parsing and resolving are separate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from linpath.errors import LinpathError

# A bound on a training's length: the kept-checkpoint schedule holds one step per 1000
# iterations, and every kept step is a file on disk (ImageNet's 90 epochs are ~450k iterations).
MAX_ITERATIONS = 100_000_000

_STEP = re.compile(r"^\s*(?:(\d+)\s*ep)?\s*(?:(\d+)\s*it)?\s*$", re.ASCII)


@dataclass(frozen=True)
class Step:
    """A duration written in epochs plus iterations."""

    epochs: int = 0
    iterations: int = 0

    @classmethod
    def parse(cls, text: str | int) -> Step:
        if isinstance(text, bool):
            raise LinpathError(f"not a step: {text!r}")
        if isinstance(text, int):
            if text < 0:
                raise LinpathError(f"a step cannot be negative: {text}")
            return cls(0, text)
        s = str(text)
        if s.strip().isascii() and s.strip().isdigit():
            return cls(0, int(s.strip()))
        m = _STEP.match(s.strip())
        if not s.strip() or m is None or (m.group(1) is None and m.group(2) is None):
            raise LinpathError(
                f"not a step: {s!r} (write e.g. '40ep', '18760it', '2ep100it' or a number of iterations)"
            )
        return cls(int(m.group(1) or 0), int(m.group(2) or 0))

    def to_iterations(self, iterations_per_epoch: int) -> int:
        return self.epochs * iterations_per_epoch + self.iterations

    def __str__(self) -> str:
        if self.epochs and self.iterations:
            return f"{self.epochs}ep{self.iterations}it"
        if self.epochs:
            return f"{self.epochs}ep"
        return f"{self.iterations}it"


def parse_step_list(text: str) -> list[Step]:
    """'80ep,120ep' -> [Step(80), Step(120)]; '' -> []."""
    return [Step.parse(part) for part in str(text).split(",") if part.strip()]


def kept_steps(last: int) -> list[int]:
    """The paper's schedule: {0} ∪ {2^k : k ≤ 10} ∪ {1000k : k ≥ 2} below `last`, and `last`."""
    if last < 0:
        raise LinpathError(f"training length cannot be negative: {last}")
    if last > MAX_ITERATIONS:
        raise LinpathError(
            f"a training of {last} iterations is longer than linpath's limit of {MAX_ITERATIONS} "
            "(it would keep a checkpoint every 1000 iterations)"
        )
    steps = {0, last}
    steps.update(2**k for k in range(11) if 2**k < last)
    steps.update(range(2000, last, 1000))
    return sorted(steps)
