"""The command registry: every module of this package that defines COMMAND is a subcommand.

A command is one module holding its arguments and its run function (OpenLTH's runner registry
is the model), so adding one is adding a module here. Command modules import the stages inside
their run functions, so `linpath --help` and `linpath presets` stay light."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NOT_COMMANDS = {"registry", "common"}  # this package's modules that hold no command


@dataclass(frozen=True)
class Command:
    """A subcommand: its name and one-line help, a function adding its arguments to its parser,
    and the function that runs it (parsed arguments -> exit code). `order` places it in the
    help's list (the paper's stages first); `tensors` False for a command that does no tensor
    work, for which the command line does not sample the machine's load (runtime/threads.py)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    order: int = 50
    tensors: bool = True


def commands() -> list[Command]:
    """Every command of the package, in help order."""
    found = []
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in NOT_COMMANDS:
            module = importlib.import_module(f"{__package__}.{info.name}")
            if isinstance(getattr(module, "COMMAND", None), Command):
                found.append(module.COMMAND)
    return sorted(found, key=lambda c: (c.order, c.name))
