"""Weight matching for linpath's models: which permutations each network has, and aligning b to a.

The permutation groups are read off the built model's modules (see engine/permutation.py for
the spec and the solver), following Git Re-Basin (Ainsworth et al. 2023):
  MLP (LeNet)  one group per hidden layer: its weight's rows and bias, the next layer's columns.
  VGG          one group per conv: its output channels, its BatchNorm, the next conv's input
               channels (after the last conv, the classifier's input features: the model
               average-pools to 1x1 and flattens, so a feature is a channel).
  CIFAR ResNet one group inside each block (conv1's outputs, bn1, conv2's inputs), and one per
               residual stream (a stage: the stem or a projection shortcut starts it) shared by
               everything added into it (the stem conv/BN, each block's conv2/bn2 and the
               projection shortcut's conv/BN) and everything reading it (conv1's and the
               shortcut's inputs, the classifier's input features).
BatchNorm running statistics follow their channels but are not compared; num_batches_tracked
is untouched. For any other model, a state made only of chained linear layers is aligned as an
MLP; anything else is refused.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from linpath.engine.permutation import PermutationSpec, permute_state, weight_matching
from linpath.errors import LinpathError
from linpath.models.cifar_resnet import CifarResNet
from linpath.models.cifar_vgg import CifarVGG, ConvBN
from linpath.models.lenet import LeNet


def mlp_layers(state: dict) -> list[str]:
    """The prefixes of the linear layers in forward order (the state's order), checked to
    chain (each layer's inputs are the previous one's outputs) and to be all the state holds."""
    layers = [k[: -len(".weight")] for k, v in state.items() if k.endswith(".weight") and v.dim() == 2]
    known = {f"{p}.{s}" for p in layers for s in ("weight", "bias")}
    extra = [k for k in state if k not in known]
    if len(layers) < 2 or extra:
        what = f"entry {extra[0]!r}" if extra else f"{len(layers)} linear layer(s)"
        raise LinpathError(
            f"align_mlp handles fully connected networks (two or more linear layers only); found {what}"
        )
    for prev, layer in zip(layers, layers[1:]):
        if state[f"{layer}.weight"].shape[1] != state[f"{prev}.weight"].shape[0]:
            raise LinpathError(f"layers {prev!r} and {layer!r} do not chain: align_mlp needs a plain MLP")
    return layers


def _mlp_spec_of_state(state: dict) -> PermutationSpec:
    layers = mlp_layers(state)
    groups = {}
    for layer, consumer in zip(layers, layers[1:]):
        outputs = [(f"{layer}.{s}", 0) for s in ("weight", "bias") if f"{layer}.{s}" in state]
        groups[layer] = (*outputs, (f"{consumer}.weight", 1))
    return PermutationSpec(groups)


class _Names:
    """(state-dict key, axis) pairs of a model's modules, by the modules' names in the model."""

    def __init__(self, model: nn.Module):
        self.names = {m: name for name, m in model.named_modules()}
        self.buffers = frozenset(
            self.key(m, b) for m in self.names for b, _ in m.named_buffers(recurse=False)
        )

    def key(self, module: nn.Module, entry: str) -> str:
        prefix = self.names[module]
        return f"{prefix}.{entry}" if prefix else entry

    def outputs(self, *modules: nn.Module) -> list[tuple[str, int]]:
        """Every float tensor of the modules along its first axis: a conv's or linear layer's
        output units, a BatchNorm's channels (its integer batch counter is left out)."""
        entries = []
        for m in modules:
            for name, t in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
                if t.is_floating_point():
                    entries.append((self.key(m, name), 0))
        return entries

    def inputs(self, module: nn.Module) -> list[tuple[str, int]]:
        """The input units of a conv or linear layer: its weight's second axis."""
        return [(self.key(module, "weight"), 1)]


def mlp_spec(model: nn.Module) -> PermutationSpec:
    """One group per hidden layer of a network of Linear layers applied in module order."""
    names = _Names(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    groups = {names.names[m]: (*names.outputs(m), *names.inputs(nxt)) for m, nxt in zip(linears, linears[1:])}
    return PermutationSpec(groups, names.buffers)


def vgg_spec(model: CifarVGG) -> PermutationSpec:
    """One group per conv + BN block; the last feeds the classifier (see the module docstring)."""
    names = _Names(model)
    blocks = [m for m in model.layers if isinstance(m, ConvBN)]
    consumers = [b.conv for b in blocks[1:]] + [model.fc]
    groups = {
        names.names[block]: (*names.outputs(block.conv, block.bn), *names.inputs(consumer))
        for block, consumer in zip(blocks, consumers)
    }
    return PermutationSpec(groups, names.buffers)


def resnet_spec(model: CifarResNet) -> PermutationSpec:
    """Inner groups per block and one group per residual stream (see the module docstring)."""
    names = _Names(model)
    streams = 0
    stream = f"residual stream {streams}"
    groups = {stream: names.outputs(model.conv, model.bn)}
    for block in model.blocks:
        block_name = names.names[block]
        groups[f"{block_name} inner"] = [*names.outputs(block.conv1, block.bn1), *names.inputs(block.conv2)]
        groups[stream] += names.inputs(block.conv1)
        if len(block.shortcut):  # a projection: conv + BN start a new residual stream
            conv, bn = block.shortcut
            groups[stream] += names.inputs(conv)
            streams += 1
            stream = f"residual stream {streams}"
            groups[stream] = names.outputs(conv, bn)
        groups[stream] += names.outputs(block.conv2, block.bn2)
    groups[stream] += names.inputs(model.fc)
    return PermutationSpec({k: tuple(v) for k, v in groups.items()}, names.buffers)


SPEC_BUILDERS = {LeNet: mlp_spec, CifarVGG: vgg_spec, CifarResNet: resnet_spec}


def permutation_spec(model: nn.Module | None, state: dict) -> PermutationSpec:
    """The permutation groups of `model` (a LeNet, CifarVGG or CifarResNet); for another model,
    or none, those of `state` when it is a plain MLP. Anything else is one clear error."""
    builder = SPEC_BUILDERS.get(type(model))
    if builder is not None:
        return builder(model)
    try:
        return _mlp_spec_of_state(state)
    except LinpathError:
        if model is None:
            raise
        known = ", ".join(t.__name__ for t in SPEC_BUILDERS)
        raise LinpathError(
            f"weight matching does not know {type(model).__name__}: it aligns {known} "
            "and networks made only of chained linear layers"
        ) from None


def align_states(
    state_a: dict, state_b: dict, model: nn.Module | None = None, max_sweeps: int = 100, seed: int = 0
) -> dict:
    """state_b with its units permuted to match state_a's (the same function as b)."""
    spec = permutation_spec(model, state_a)
    return permute_state(state_b, spec, weight_matching(state_a, state_b, spec, max_sweeps, seed))


def permute_mlp(state: dict, perms: list) -> dict:
    """The state with hidden layer i's units reordered by perms[i] (unit j of the result is unit
    perms[i][j] of `state`); the same function as `state`."""
    spec = _mlp_spec_of_state(state)
    if len(perms) != len(spec.groups):
        raise LinpathError(f"{len(spec.groups)} hidden layers need as many permutations, got {len(perms)}")
    return permute_state(state, spec, dict(zip(spec.groups, perms)))


def matching_permutations(state_a: dict, state_b: dict, max_sweeps: int = 100, seed: int = 0) -> list:
    """The hidden-unit permutations of b (an MLP) found by weight matching, layer by layer."""
    spec = _mlp_spec_of_state(state_a)
    perms = weight_matching(state_a, state_b, spec, max_sweeps, seed)
    return [np.asarray(perms[name]) for name in spec.groups]


def align_mlp(state_a: dict, state_b: dict, max_sweeps: int = 100, seed: int = 0) -> dict:
    """state_b with its hidden units permuted to match state_a's (fully connected networks)."""
    return align_states(state_a, state_b, None, max_sweeps, seed)
