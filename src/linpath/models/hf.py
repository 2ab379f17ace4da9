"""A model built from a Hugging Face-style folder's config.json, with transformers if installed.

`linpath path STEP_A/ STEP_B/ --task causal-lm` needs the network the folders' weights belong
to; their config.json names it. The model is built from the config alone (random weights, no
download, nothing read from the shards: linpath writes every point's weights itself), in
float32, with its key-value cache off (evaluation scores whole sequences). transformers is an
optional dependency (linpath[hf]); without it, one line says so.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from linpath.errors import LinpathError
from linpath.io.hf_folder import CONFIG_FILE


def from_folder(folder: str | Path, task: str = "causal-lm") -> nn.Module:
    """AutoModelForCausalLM (task "causal-lm") or AutoModelForSequenceClassification from the
    folder's config.json."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise LinpathError(f"{folder} has no {CONFIG_FILE} to build the model from: pass the model (--model)")
    try:
        import transformers
    except ImportError:
        raise LinpathError(
            f"building the model from {folder / CONFIG_FILE} needs transformers (pip install 'linpath[hf]'), "
            "or pass the model (--model)"
        ) from None
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        kind = (
            transformers.AutoModelForCausalLM
            if task == "causal-lm"
            else transformers.AutoModelForSequenceClassification
        )
        model = kind.from_config(config)
    except (ValueError, OSError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LinpathError(f"cannot build a model from {folder / CONFIG_FILE}: {first}") from None
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    return model.float().eval()
