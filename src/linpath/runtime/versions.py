"""Versions of linpath and what it runs on, recorded in every spec.json."""

from __future__ import annotations

import platform

from linpath._version import __version__


def versions() -> dict[str, str]:
    import numpy  # here, not above: config/spec.py imports this module, and `linpath presets` needs no torch
    import torch

    return {
        "linpath": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
