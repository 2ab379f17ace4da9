"""θ = Σ_i c_i·θ_i written into one resident model, tensor by tensor, from states left on disk.

The preloaded engine (evaluator.py) copies both endpoint states onto the device: three models
in memory. For a language model that can be most of a device, so here the states may be model
folders (io/hf_folder.py) read one tensor at a time through safetensors' memory map: for each
tensor of the model the corresponding tensors of the states are read, cast to the model's
dtype, mixed and written into the model's own tensor, then dropped. The extra memory is a few
tensors of the largest size and one mapped shard per state, however many points are evaluated.

Keys are matched once (`write_plan`), a model folder's under the names transformers loads them
by (under_model_names: Pythia's embed_out.weight is transformers 5's lm_head.weight): a model
tensor tied to another (GPT-2's lm_head.weight is transformer.wte.weight) is written through its
partner when the files hold only one of them, and untied in the model when a state holds both
with different values (what transformers' from_pretrained does with such a folder: each keeps
the file's tensor, see untie_differing);
a persistent buffer the files lack keeps the model's own value (as from_pretrained does), and
non-persistent buffers (not in the state dict) are never touched; a parameter the files lack,
a tensor the model lacks or a shape that differs is one line. Integer entries take the last
state's value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from linpath.engine.interpolate import check_compatible
from linpath.errors import LinpathError
from linpath.io.hf_folder import ModelFolder
from linpath.io.tensors import nonfinite_problem
from linpath.models.hf import checkpoint_names


class DictState:
    """A state dict in memory behind ModelFolder's interface (meta, reader().get): the fast
    path, each tensor moved to the device once, up front."""

    def __init__(self, state: Mapping[str, torch.Tensor], device: torch.device | str = "cpu"):
        self.state = {k: v.to(device) for k, v in state.items()}

    def meta(self) -> dict[str, torch.Tensor]:
        return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in self.state.items()}

    def tensors(self):
        return iter(self.state.items())

    @contextlib.contextmanager
    def reader(self, device=None):
        yield self

    def get(self, name: str) -> torch.Tensor:
        return self.state[name]


class RenamedState:
    """A state read under the model's names for some of its keys (`names`: {state key: model
    key}; models.hf.checkpoint_names gives those transformers renames on load), for a StateMix."""

    def __init__(self, state, names: Mapping[str, str]):
        self.state, self.names = state, dict(names)
        self.to_state = {self.names.get(k, k): k for k in state.meta()}
        entries = getattr(state, "entries", None)
        if entries is not None:
            self.entries = {key: entries[source] for key, source in self.to_state.items()}

    def meta(self) -> dict[str, torch.Tensor]:
        own = self.state.meta()
        return {key: own[source] for key, source in self.to_state.items()}

    def tensors(self):
        for key, tensor in self.state.tensors():
            yield self.names.get(key, key), tensor

    @contextlib.contextmanager
    def reader(self, device=None):
        with self.state.reader(device) if device is not None else self.state.reader() as reader:
            yield _RenamedReader(reader, self.to_state)


class _RenamedReader:
    def __init__(self, reader, to_state: dict[str, str]):
        self.reader, self.to_state = reader, to_state

    def get(self, name: str) -> torch.Tensor:
        return self.reader.get(self.to_state[name])


LazyState = ModelFolder | DictState | RenamedState


def under_model_names(model: nn.Module, state: LazyState) -> LazyState:
    """A model folder read under the model's names where transformers loads its keys under
    others (models.hf.checkpoint_names: a Pythia folder's embed_out.weight is transformers 5's
    lm_head.weight); any other state as it is."""
    if isinstance(state, ModelFolder):
        names = checkpoint_names(model, state.entries)
        if names:
            return RenamedState(state, names)
    return state


def alias_groups(targets: Mapping[str, torch.Tensor]) -> list[list[str]]:
    """The model's state-dict keys grouped by the tensor they name: tied weights share a group."""
    groups: dict[tuple, list[str]] = {}
    for k, t in targets.items():
        where = (t.untyped_storage().data_ptr(), t.storage_offset(), t.dtype, t.device) if t.numel() else k
        groups.setdefault((where, tuple(t.shape), tuple(t.stride())), []).append(k)
    return list(groups.values())


def model_targets(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and persistent buffers by state-dict key, as plain tensors."""
    return {
        k: (v.data if isinstance(v, nn.Parameter) else v) for k, v in model.state_dict(keep_vars=True).items()
    }


def _source(group: list[str], held: dict, name: str, buffers: set[str]) -> str | None:
    """The key a state holds for one model tensor (any of its tied names); None for a buffer it
    lacks (the model's value stays); one line for a parameter it lacks."""
    present = [k for k in group if k in held]
    if present:
        return present[0]
    if all(k in buffers for k in group):
        return None
    tied = f" (nor its tied {', '.join(repr(k) for k in group[1:])})" if len(group) > 1 else ""
    raise LinpathError(f"{name} lacks the model's {group[0]!r}{tied}")


def write_plan(
    model: nn.Module, metas: Sequence[dict], names: Sequence[str], ties: dict[str, list[str]] | None = None
) -> list[tuple[str, tuple]]:
    """[(model key to write, the key to read in each state)], one per distinct model tensor the
    states hold; raises one line for any mismatch (see the module's docstring). `ties`: each
    key's tie group before untie_differing untied some (a state holding one key of a group
    gives it to all, as from_pretrained ties them in that state)."""
    targets = model_targets(model)
    buffers = {k for k, _ in model.named_buffers()}
    plan, matched = [], [set() for _ in metas]  # matched[i]: state i's keys that name a model tensor
    for own in alias_groups(targets):
        group = own + [k for k in (ties or {}).get(own[0], ()) if k not in own]
        sources = tuple(_source(group, meta, name, buffers) for meta, name in zip(metas, names))
        if None in sources and any(s is not None for s in sources):
            raise LinpathError(
                f"{names[sources.index(None)]} lacks the buffer {group[0]!r}, which another state holds"
            )
        if sources[0] is not None:
            plan.append((group[0], sources))
        for keys, meta in zip(matched, metas):
            keys.update(k for k in group if k in meta)
    for i, (meta, name) in enumerate(zip(metas, names)):
        extra = [k for k in meta if k not in matched[i]]
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise LinpathError(f"{name} holds {extra[0]!r}{more}, which the model does not have")
        own = {sources[i]: targets[key] for key, sources in plan}
        check_compatible(own, {sources[i]: meta[sources[i]] for _, sources in plan}, "the model", name)
    return plan


def tie_groups(model: nn.Module) -> dict[str, list[str]]:
    """{key: every key of its tie group} for the model's tied tensors (GPT-2's lm_head.weight and
    transformer.wte.weight)."""
    return {k: group for group in alias_groups(model_targets(model)) if len(group) > 1 for k in group}


def differing_ties(model: nn.Module, states: Sequence[LazyState], names: Sequence[str]) -> list[tuple]:
    """(tie group, state name) for each group of tied model keys that a state holds twice or more
    with different values (a folder whose config ties lm_head to the embeddings while its file
    holds another lm_head.weight)."""
    found = []
    for group in {id(g): g for g in tie_groups(model).values()}.values():
        for state, name in zip(states, names):
            held = [k for k in group if k in state.meta()]
            if len(held) < 2:
                continue
            with state.reader() as reader:
                first = reader.get(held[0])
                if any(not torch.equal(first, reader.get(k)) for k in held[1:]):
                    found.append((held, name))
                    break
    return found


def untie_differing(model: nn.Module, states: Sequence[LazyState], names: Sequence[str]) -> dict:
    """Untie, in `model`, the tied keys a state holds with different values, as transformers'
    from_pretrained does with such a folder (it warns "... so we will NOT tie them" and keeps
    each tensor the file holds); returns the tie groups from before (write_plan's `ties`)."""
    ties = tie_groups(model)
    for held, _ in differing_ties(model, states, names):
        for key in held[1:]:
            path, _, attr = key.rpartition(".")
            module = model.get_submodule(path)
            old = getattr(module, attr)
            setattr(module, attr, nn.Parameter(old.detach().clone(), requires_grad=old.requires_grad))
        config = getattr(model, "config", None)
        if getattr(config, "tie_word_embeddings", None):
            config.tie_word_embeddings = False  # nothing ties them again (model.tie_weights())
    return ties


def full_state(model: nn.Module, state: LazyState, name: str) -> dict[str, torch.Tensor]:
    """A model folder read whole into a state dict keyed like the model's: tied keys the files
    leave out filled from their partners, persistent buffers they lack taken from the model
    (for callers that hold whole states, such as planes; see write_plan for the checks). Tied
    keys the folder holds with different values are refused in one line: a whole state is
    loaded into the model as it is, tied (untie_differing serves paths)."""
    state = under_model_names(model, state)
    for held, where in differing_ties(model, [state], [name]):
        raise LinpathError(
            f"{where} holds {held[1]!r} and {held[0]!r} with different values, though the model ties them "
            "(tie_word_embeddings in config.json); transformers unties them for such a folder: set "
            '"tie_word_embeddings": false in its config.json (or give a model built so) to use both'
        )
    plan = {key: sources[0] for key, sources in write_plan(model, [state.meta()], [name])}
    targets = model_targets(model)
    out = {}
    with state.reader() as reader:
        for group in alias_groups(targets):
            tensor = reader.get(plan[group[0]]).clone() if group[0] in plan else targets[group[0]].clone()
            out.update(dict.fromkeys(group, tensor))
    return {k: out[k] for k in targets}


def check_finite_states(states: Sequence[LazyState], names: Sequence[str]) -> None:
    """Refuse a state holding NaN or inf, reading one tensor at a time."""
    for state, name in zip(states, names):
        for key, tensor in state.tensors():
            if problem := nonfinite_problem({key: tensor}):
                raise LinpathError(
                    f"{name}: {problem}; pass allow_nonfinite=True (--allow-nonfinite) to evaluate it"
                )


class StateMix:
    """Writes Σ_i c_i·state_i into `model`'s own tensors (see the module's docstring)."""

    def __init__(self, model: nn.Module, states: Sequence[LazyState], names: Sequence[str]):
        self.states, self.names = [under_model_names(model, s) for s in states], list(names)
        ties = untie_differing(model, self.states, self.names)
        self.targets = model_targets(model)
        plan = write_plan(model, [s.meta() for s in self.states], self.names, ties)
        self.plan = sorted(
            plan, key=lambda p: (_shard_of(self.states[0], p[1][0]), p[1][0])
        )  # a shard at a time
        self.device = next(iter(self.targets.values())).device if self.targets else torch.device("cpu")

    @torch.no_grad()
    def write(self, coefs: Sequence[float]) -> None:
        """θ = Σ coefs[i]·states[i] (for two states with coefficients (1 - x, x): lerp at x)."""
        if len(coefs) != len(self.states):
            raise ValueError(f"{len(coefs)} coefficients for {len(self.states)} states")
        with contextlib.ExitStack() as stack:
            readers = [stack.enter_context(s.reader(self.device)) for s in self.states]
            for key, sources in self.plan:
                target = self.targets[key]
                if not target.is_floating_point():
                    target.copy_(readers[-1].get(sources[-1]))
                    continue
                parts = [r.get(source) for r, source in zip(readers, sources)]
                _combine_into(target, parts, [float(c) for c in coefs])
                del parts


def _shard_of(state: LazyState, key: str) -> str:
    entries = getattr(state, "entries", None)
    return str(entries[key].file) if entries is not None else ""


def _combine_into(target: torch.Tensor, parts: list[torch.Tensor], coefs: list[float]) -> None:
    """target = Σ coefs[i]·parts[i], in the target's dtype; one fused lerp for a path's two ends."""
    parts = [p.to(device=target.device, dtype=target.dtype) for p in parts]
    if len(parts) == 2 and abs(coefs[0] + coefs[1] - 1.0) < 1e-12:
        if target.is_contiguous():
            torch.lerp(parts[0], parts[1], coefs[1], out=target)
        else:
            target.copy_(torch.lerp(parts[0], parts[1], coefs[1]))
        return
    mixed = parts[0] * coefs[0]
    for part, c in zip(parts[1:], coefs[1:]):
        mixed.add_(part, alpha=c)
    target.copy_(mixed)
