"""The one independent oracle of the suite: what a user would write by hand.

For each x: mix the two state dicts, load them into a freshly built model, optionally
re-estimate BatchNorm statistics, and evaluate with a DataLoader. It shares no code with the
engine (no stem mixing, no folding, no in-place writes), so agreement is evidence."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def mix(start: dict, end: dict, x: float) -> dict:
    return {k: (1 - x) * start[k] + x * end[k] if start[k].is_floating_point() else end[k] for k in start}


@torch.no_grad()
def plain_path(
    make_model: Callable[[], torch.nn.Module],
    start: dict,
    end: dict,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    xs,
    bn: str = "interpolate",
    bn_batches=(),
    loss_fn=F.cross_entropy,
    rename: Callable[[str], str] = lambda k: k,
    batch_size: int = 50,
) -> list[tuple[float, float]]:
    """[(mean loss, error)] at each x; `rename` maps the states' keys to the model's."""
    out = []
    for x in xs:
        model = make_model()
        model.load_state_dict({rename(k): v for k, v in mix(start, end, float(x)).items()})
        if bn == "recompute":
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None
            model.train()
            for b in bn_batches:
                model(b)
        model.eval()
        loss, wrong = 0.0, 0
        for xb, yb in DataLoader(TensorDataset(inputs, labels), batch_size=batch_size):
            logits = model(xb)
            loss += float(loss_fn(logits, yb)) * len(yb)
            wrong += int((logits.argmax(1) != yb).sum())
        out.append((loss / len(labels), wrong / len(labels)))
    return out
