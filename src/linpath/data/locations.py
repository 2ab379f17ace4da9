"""Where data and caches live by default: one place for both."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$LINPATH_CACHE, else $XDG_CACHE_HOME/linpath, else ~/.cache/linpath."""
    env = os.environ.get("LINPATH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "linpath"


def default_data_root() -> Path:
    """--data-root, else $LINPATH_DATA, else <cache root>/data."""
    env = os.environ.get("LINPATH_DATA")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "linpath" / "data"
