"""Progress: a tqdm bar on a terminal; one plain line per epoch or finished item when stderr
is a file or a pipe (carriage-return bars make a log unreadable)."""

from __future__ import annotations

import sys


def plain() -> bool:
    """True when progress should be plain lines (stderr is not a terminal)."""
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):
        return True


def line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
