"""A model built from a Hugging Face-style folder's config.json, with transformers if installed.

`linpath path STEP_A/ STEP_B/ --task causal-lm` needs the network the folders' weights belong
to; their config.json names it. The model is built from the config alone (random weights, no
download, nothing read from the shards: linpath writes every point's weights itself), in
float32, with its key-value cache off (evaluation scores whole sequences). transformers is an
optional dependency (linpath[hf]); without it, one line says so.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from linpath.errors import LinpathError
from linpath.io.hf_folder import CONFIG_FILE, ModelFolder, is_model_folder
from linpath.io.jsonfile import read_json


def from_folder(folder: str | Path, task: str = "causal-lm", trust_remote_code: bool = False) -> nn.Module:
    """AutoModelForCausalLM (task "causal-lm") or AutoModelForSequenceClassification from the
    folder's config.json; a model whose code lives in the folder (*.py) is built only with
    trust_remote_code, which runs that code."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise LinpathError(f"{folder} has no {CONFIG_FILE} to build the model from: pass the model (--model)")
    read_json(
        folder / CONFIG_FILE, dict
    )  # damaged or nested too deeply: one line naming it, before transformers
    try:
        import transformers
    except ImportError:
        raise LinpathError(
            f"building the model from {folder / CONFIG_FILE} needs transformers (pip install 'linpath[hf]'), "
            "or pass the model (--model)"
        ) from None
    try:
        config = transformers.AutoConfig.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=trust_remote_code
        )
        kind = (
            transformers.AutoModelForCausalLM
            if task == "causal-lm"
            else transformers.AutoModelForSequenceClassification
        )
        if is_model_folder(folder):
            check_config(folder, kind, config)
        model = kind.from_config(config, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LinpathError(f"cannot build a model from {folder / CONFIG_FILE}: {first}") from None
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    return model.float().eval()


def checkpoint_names(model: nn.Module, keys) -> dict[str, str]:
    """{checkpoint key: the model's key} for the keys a Hugging Face model loads under another
    name (transformers 5 renames some on load and back on save: GPT-NeoX's, Pythia's,
    embed_out.weight is the model's lm_head.weight); empty for other models, and with a
    transformers that renames nothing. A key transformers would merge or split with others
    cannot be written a tensor at a time: one line."""
    if not type(model).__module__.startswith("transformers.") or not hasattr(model, "config"):
        return {}  # not a Hugging Face model: its keys are its own
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
    except ImportError:
        return {}
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [
        t for t in transforms if isinstance(t, WeightConverter) and not isinstance(t, WeightRenaming)
    ]
    own = dict.fromkeys(model.state_dict(), True)
    prefix = getattr(model, "base_model_prefix", None) or None
    out = {}
    for key in keys:
        name, converted = rename_source_key(key, renamings, converters, prefix, own)
        if converted is not None:
            raise LinpathError(
                f"the checkpoint's {key!r} is converted by transformers on load (merged or split with other "
                "tensors): linpath writes tensors one at a time and cannot evaluate this model's files"
            )
        if name != key:
            out[key] = name
    return out


def check_config(folder: Path, kind, config) -> None:
    """Refuse, before any memory is allocated, a config.json that does not describe the folder's
    own shards (a "vocab_size": 50000000 over shards of 256 rows would allocate gigabytes): the
    model is built on the meta device (shapes only) and its tensors compared with the shards'
    headers. A model that cannot be built on the meta device is left to the real build."""
    try:
        with torch.device("meta"):
            meta = kind.from_config(config)
    except (RuntimeError, NotImplementedError, ValueError, TypeError, AttributeError):
        return
    entries = ModelFolder(folder).entries
    renamed = checkpoint_names(meta, list(entries))  # the names transformers loads them by
    held = {renamed.get(k, k): v for k, v in entries.items()}
    named = list(meta.named_parameters(remove_duplicate=False)) + list(
        meta.named_buffers(remove_duplicate=False)
    )
    groups: dict[int, list[tuple[str, torch.Tensor]]] = {}
    for key, tensor in named:
        groups.setdefault(id(tensor), []).append((key, tensor))
    for group in groups.values():
        for key, tensor in group:
            if key in held and tuple(held[key].shape) != tuple(tensor.shape):
                raise LinpathError(
                    f"{folder / CONFIG_FILE} does not describe the weights in {folder}: it makes {key!r} of "
                    f"shape {tuple(tensor.shape)}, the shards hold {tuple(held[key].shape)}"
                )
    lacking = [
        g[0][0]
        for g in groups.values()
        if isinstance(g[0][1], nn.Parameter) and not any(k in held for k, _ in g)
    ]
    if lacking:
        raise LinpathError(
            f"{folder / CONFIG_FILE} does not describe the weights in {folder}: the shards hold none of "
            f"{len(lacking)} of its model's parameters (the first: {lacking[0]!r})"
        )
