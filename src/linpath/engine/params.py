"""Parameter subsets: interpolate only some tensors, the others held at one endpoint.

A subset spec is a comma-separated union of terms, each naming state-dict keys of a model:

  weights        every `weight` parameter except BatchNorm's (convolution and linear kernels)
  biases         every `bias` parameter except BatchNorm's
  bn             BatchNorm's parameters and its running buffers (mean, var, batch count)
  layer:NAME     everything under the module NAME (e.g. layer:fc1, layer:layer1.0.conv1)
  a glob         fnmatch on the key, e.g. fc*.bias, fc1.*

Each term must select at least one tensor, so a typo is an error rather than a silently
smaller subset. A held tensor keeps the `hold` endpoint's value at every x; the default, "end",
is Vlaar & Frankle's: the other layers stay trained while the chosen ones move.

The engine needs nothing new: `restrict` copies the hold endpoint's held tensors into the
other endpoint, so θ(x) = (1 - x)·start' + x·end' is the subset path itself, and the stem
mixing, BatchNorm folding and BatchNorm recompute stay exact (each is exact for any
pair of endpoints). Under bn="recompute" the running statistics are re-estimated at every x,
held or not: the subset decides the weights, the policy the statistics.
"""

from __future__ import annotations

import fnmatch

from torch import nn

from linpath.engine.bnfold import conv_bn_pairs
from linpath.engine.choices import HOLDS, check_hold, spec_terms
from linpath.errors import LinpathError

__all__ = ["HOLDS", "check_hold", "spec_terms", "layer_names", "select", "restrict", "layer_specs"]


def layer_names(model: nn.Module) -> list[str]:
    """The modules that own parameters themselves, in the model's order (its layers)."""
    return [
        name for name, m in model.named_modules() if name and any(True for _ in m.parameters(recurse=False))
    ]


def _owners(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """state-dict key -> (its module's name, the module)."""
    modules = dict(model.named_modules())
    out = {}
    for key in model.state_dict():
        owner = key.rpartition(".")[0]
        out[key] = (owner, modules.get(owner))
    return out


def _term_keys(term: str, owners: dict) -> set[str]:
    def is_bn(module) -> bool:
        return isinstance(module, nn.modules.batchnorm._BatchNorm)

    if term == "weights":
        return {k for k, (_, m) in owners.items() if k.endswith(".weight") and not is_bn(m)}
    if term == "biases":
        return {k for k, (_, m) in owners.items() if k.endswith(".bias") and not is_bn(m)}
    if term == "bn":
        return {k for k, (_, m) in owners.items() if is_bn(m)}
    if term.startswith("layer:"):
        name = term[len("layer:") :]
        return {k for k in owners if k.startswith(name + ".")}
    return {k for k in owners if fnmatch.fnmatchcase(k, term)}


def select(spec: str, model: nn.Module) -> set[str]:
    """The state-dict keys of `model` that `spec` selects; one line naming the spec and the
    model's layers when a term selects nothing."""
    owners = _owners(model)
    chosen: set[str] = set()
    for term in spec_terms(spec):
        keys = _term_keys(term, owners)
        if not keys:
            raise LinpathError(
                f"parameter subset {spec!r}: {term!r} selects no tensor of the model "
                f"(its layers: {', '.join(layer_names(model)) or 'none'})"
            )
        chosen |= keys
    return chosen


def restrict(start: dict, end: dict, selected: set[str], hold: str = "end") -> tuple[dict, dict]:
    """Endpoints whose straight line moves only the selected tensors: each held tensor is the
    hold endpoint's at both ends (shared, not copied: the engine never writes to them)."""
    check_hold(hold)  # a key only one endpoint has is left for the engine's check to name
    if hold == "end":
        return {k: v if k in selected else end.get(k, v) for k, v in start.items()}, end
    return start, {k: v if k in selected else start.get(k, v) for k, v in end.items()}


def layer_specs(model: nn.Module) -> dict[str, str]:
    """One spec per layer, for the per-layer mode: each module owning parameters, a
    convolution together with the BatchNorm it feeds (their product is one layer, as BN
    folding treats it), a BatchNorm fed by no single convolution on its own."""
    pairs = dict(conv_bn_pairs(model))
    paired = set(pairs.values())
    return {
        name: ",".join(f"layer:{n}" for n in (name, pairs.get(name)) if n)
        for name in layer_names(model)
        if name not in paired
    }
