"""States as the Python API takes them: a state dict, a module, or a file of any supported
format, loaded weights-only and fitted to the model the states are evaluated on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import torch
from torch import nn

from linpath.engine.interpolate import check_compatible
from linpath.engine.lazy_states import full_state
from linpath.errors import LinpathError
from linpath.io.checkpoints import find_state, match_keys
from linpath.io.hf_folder import ModelFolder, is_model_folder
from linpath.io.hub import resolve_state
from linpath.io.tensors import load_state_dict, nonfinite_problem

StateLike = Union[Mapping[str, torch.Tensor], str, os.PathLike, nn.Module]


def located(state):
    """A state addressed by revision (hf://ORG/NAME@REVISION, or FOLDER@REVISION for a local
    folder of revisions: io/hub.py) as its local model folder, downloaded from the Hub where
    needed (huggingface_hub's cache, HF_HUB_OFFLINE, its token); anything else as it is."""
    return resolve_state(state) or state


def load_state(state: StateLike, name: str = "state", key: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict from a mapping, a module, or a file (loaded weights-only, never code).

    Files and mappings may wrap it (see io/checkpoints.py: {"state_dict": ...}, Lightning
    .ckpt, .safetensors, ...), or hold it at `key`, a dotted path such as "ema.model"."""
    if isinstance(state, nn.Module):
        return dict(state.state_dict())
    if isinstance(state, (str, os.PathLike)):
        return load_state_dict(Path(state), key)
    if isinstance(state, Mapping):
        return find_state(state, f"the {name}", key)
    raise LinpathError(
        f"the {name} must be a state dict, a module or a file path, got {type(state).__name__}"
    )


def check_finite(state: dict, given: StateLike, name: str) -> None:
    """A state holding NaN or inf is refused, naming the tensor (unless allowed by the caller)."""
    if problem := nonfinite_problem(state):
        where = Path(given).name if isinstance(given, (str, os.PathLike)) else f"the {name}"
        raise LinpathError(
            f"{where}: {problem}; pass allow_nonfinite=True (--allow-nonfinite) to evaluate it"
        )


def as_model_dtypes(own: dict, state: dict) -> dict:
    """The state's floating entries cast to the model's dtypes (the engine mixes in those)."""
    return {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}


def model_states(
    own: dict,
    given: dict[str, StateLike],
    key: str | None = None,
    allow_nonfinite: bool = False,
    model: nn.Module | None = None,
) -> dict[str, dict]:
    """Each named state loaded, its keys fitted to the model's (a "module."/"model." prefix
    stripped), checked against the others and the model, refused when not finite, and cast to
    the model's dtypes. With `model`, a model folder (config.json, *.safetensors) is read whole,
    its tied keys filled (engine/lazy_states.py)."""
    given = {name: located(state) for name, state in given.items()}
    states = {name: _loaded(own, state, name, key, model) for name, state in given.items()}
    names = list(states)
    for name in names[1:]:
        check_compatible(states[names[0]], states[name], f"the {names[0]}", f"the {name}")
    if not allow_nonfinite:
        for name, state in states.items():
            check_finite(state, given[name], name)
    check_compatible(own, states[names[0]], "the model", f"the {names[0]}")
    return {name: as_model_dtypes(own, state) for name, state in states.items()}


def _loaded(own: dict, state: StateLike, name: str, key: str | None, model: nn.Module | None) -> dict:
    if model is not None and is_model_folder(state):
        return full_state(model, ModelFolder(state), f"the {name} ({Path(state).name})")
    return match_keys(load_state(state, name, key), own)


def endpoints(
    own: dict, start_state: StateLike, end_state: StateLike, key: str | None, allow_nonfinite: bool
):
    """The start and end states as the model's own state dicts (model_states)."""
    states = model_states(own, {"start state": start_state, "end state": end_state}, key, allow_nonfinite)
    return states["start state"], states["end state"]
