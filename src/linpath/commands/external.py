"""--model and --data for the commands that evaluate an external run (sweep, plane): resolved
as `linpath path` resolves them (commands/path.py), into sweep/external.py's ExternalInputs."""

from __future__ import annotations

import torch

from linpath.api import fit_inputs
from linpath.commands.path import load_data, resolve_model
from linpath.errors import LinpathError
from linpath.sweep.external import ExternalInputs


def external_inputs(
    model: str | None, data: str | None, data_root=None, split: str = "test", num_classes: int | None = None
) -> ExternalInputs | None:
    """None when neither is given (a preset's run: its spec builds both); else both, checked:
    the model is built once and run on two of the data's inputs, so a mismatch is one line."""
    if model is None and data is None:
        return None
    if model is None or data is None:
        raise LinpathError(
            "--model and --data go together: an external run needs the model to build (module:callable) "
            "and the data to evaluate on (a data set name or a .pt file of (inputs, targets))"
        )
    evalset, classes = load_data(data, data_root, split, "cpu")
    classes = num_classes or classes
    evalset = fit_inputs(resolve_model(model, classes), evalset, torch.device("cpu"))
    return ExternalInputs(lambda: resolve_model(model, classes), evalset, classes, data)
