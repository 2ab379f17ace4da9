"""Stem mixing, the one routine for lines and planes.

When a network's first layer (its stem, stem.py) is linear in its parameters, its output at an
affine combination of states is the same combination of the states' outputs. A line mixes two
anchors' outputs, lerp(h_start, h_end, x); a plane three, h_o + α·d_a + β·d_b. So the anchors'
stem outputs are computed once per chunk of examples and, per point, only the rest of the
network runs, on the mixed output. This module holds that loop once; the line (evaluator.py)
and the plane (plane.py) supply their anchors, how a point's state is written, and the mix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from linpath.engine.bnfold import set_submodule
from linpath.engine.scoring import Result, make_tally
from linpath.errors import LinpathError
from linpath.runtime.device import autocast

# anchors(lo, hi) -> per batch of examples lo..hi, the anchors' stem outputs (a tuple each)
Anchors = Callable[[int, int], list[tuple[torch.Tensor, ...]]]
# mixer(point, anchor outputs of the chunk) -> mix(batch index, that batch's anchors, out) -> stem output
Mixer = Callable[[object, list], Callable[[int, tuple, torch.Tensor], torch.Tensor]]


class _Given(nn.Module):
    """Stands in for the stem: returns a precomputed output, ignoring its input."""

    def __init__(self):
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, _input):
        return self.value


class _StopForward(Exception):
    pass


def get_submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise LinpathError(f"model has no module {name!r} (named as its linear stem)") from None


def stem_chunk(engine, anchors: int) -> int:
    """Examples per chunk whose stem outputs under `anchors` states fit in engine.stem_memory
    (float32 or the model's wider dtype), a multiple of the batch size and at least one batch."""
    per_example = max(1, anchors * 4 * engine.stem_numel)
    return max(engine.batch_size, engine.stem_memory // per_example // engine.batch_size * engine.batch_size)


@torch.no_grad()
def stem_outputs(engine, state: dict, lo: int, hi: int) -> list[torch.Tensor]:
    """The stem's output under `state` for each batch of examples lo..hi (the forward pass is
    cut short right after the stem); writes the stem's entries of `state` into the model."""
    prefix = engine.stem_name + "."
    for k, target in engine.targets.items():
        if k.startswith(prefix):
            target.copy_(state[k])
    captured = []

    def capture_and_stop(module, inputs, output):
        # mixed in float32 at least (a bf16 stem's outputs are widened), a float64 model's in float64
        captured.append(output.float() if output.dtype in (torch.bfloat16, torch.float16) else output)
        raise _StopForward

    hook = get_submodule(engine.model, engine.stem_name).register_forward_hook(capture_and_stop)
    try:
        for inputs, _ in engine.batches(lo, hi):
            with contextlib.suppress(_StopForward), autocast(engine.device, engine.precision):
                engine.model(inputs)
    finally:
        hook.remove()
    return captured


@contextlib.contextmanager
def _stem_given(engine) -> Iterator[_Given]:
    """The evaluating network with its stem replaced by a _Given for the duration."""
    net = engine.net
    own = get_submodule(net, engine.stem_name)
    given = _Given()
    set_submodule(net, engine.stem_name, given)
    try:
        yield given
    finally:
        set_submodule(net, engine.stem_name, own)


@torch.no_grad()
def evaluate_mixed(
    engine,
    points: Sequence,
    count: int,
    anchors: Anchors,
    assign: Callable[[object], None],
    mixer: Mixer,
    on_point: Callable[[], None] | None = None,
) -> list[Result]:
    """Results at `points` with the stem's output mixed from `count` anchors: per chunk of
    examples, anchors(lo, hi) once; per point, assign(point) writes its state into the model
    (BatchNorm refolded after) and mixer(point, outputs) gives each batch's stem output.
    on_point() is called after each point's last chunk."""
    tallies = [make_tally(engine.labels, engine.population) for _ in points]
    n = len(engine.labels)
    per_chunk = stem_chunk(engine, count)
    for lo in range(0, n, per_chunk):
        hi = min(n, lo + per_chunk)
        outputs = anchors(lo, hi)
        buffer = torch.empty_like(outputs[0][0])  # one batch's mixed stem output, reused
        with _stem_given(engine) as given:
            for point, tally in zip(points, tallies):
                mix = mixer(point, outputs)
                assign(point)
                engine.fold()
                for i, ((inputs, labels), h) in enumerate(zip(engine.batches(lo, hi), outputs)):
                    given.value = mix(i, h, buffer[: len(h[0])])
                    with autocast(engine.device, engine.precision):
                        tally.add(engine.forward(inputs), labels, engine.score)
                if on_point is not None and hi == n:
                    on_point()
    return [t.result() for t in tallies]
