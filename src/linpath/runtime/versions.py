"""Versions of linpath and what it runs on, recorded in every spec.json."""

from __future__ import annotations

import platform

import numpy
import torch

from linpath._version import __version__


def versions() -> dict[str, str]:
    return {
        "linpath": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
