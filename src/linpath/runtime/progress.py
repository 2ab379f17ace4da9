"""Progress: a tqdm bar on a terminal; one plain line per finished unit of work (an epoch, an
item, a row) when stderr is a file or a pipe (carriage-return bars make a log unreadable).
Every long command reports through Progress, so they all look and behave the same."""

from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm


def plain() -> bool:
    """True when progress should be plain lines (stderr is not a terminal)."""
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):
        return True


def line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Progress:
    """Counts finished work: update(n, what) advances the bar by n, or, off a terminal, prints
    `what` with the seconds since the start. Disabled, it does nothing."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "net", enabled: bool = True):
        self.plain = enabled and plain()
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            disable=not enabled or self.plain,
            dynamic_ncols=True,
            mininterval=0.5,
        )
        self.started = time.monotonic()
        self.done = 0

    def update(self, n: int, what: str | None = None) -> None:
        self.done += n
        self.bar.update(n)
        if self.plain and what:
            line(f"{what} ({math.ceil(time.monotonic() - self.started)} s)")

    def close(self) -> None:
        self.bar.close()
