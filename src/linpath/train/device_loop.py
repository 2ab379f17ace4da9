"""The device loop: the per-replicate loop's steps without host synchronization, the full-batch
step replayed from a CUDA graph. The default for one process on CUDA with in-memory data.

The numbers are loop.py's: each epoch's permutation and augmentation draws come from the same
generator calls (data/memory.py's epoch plans), every step is replicate.sgd_update, and the train
loss is summed in the same order (in place, on the device) and read once per epoch by the hooks.
What changes is when the host works:
- an epoch's plan is drawn on the CPU and copied to the device once (pinned, non-blocking); the
  next epoch's is drawn while the device still runs the queued steps of this one;
- a full-batch step copies its plan columns into a static buffer and replays a CUDA graph of
  StaticStep.run (batch from the buffer, forward, loss, backward, SGD step, loss sum): one graph
  per learning rate, captured after WARMUP_STEPS eager steps on a side stream (these also create
  SGD's momentum buffers, which the graph then updates in place); the short last batch of an
  epoch and learning rates with few steps left run eagerly;
- the per-epoch test evaluation runs channels-last in batches as large as memory allows.
A capture that fails, or a first replay that disagrees with the eager step taken from the same
state, turns graphs off with one warning line, and training goes on eagerly.

Switches (environment; neither enters the spec or its hash): LINPATH_CUDA_GRAPHS=0 turns the
graphs off; LINPATH_DEVICE_LOOP=0 the whole loop, =1 runs it on the CPU too, as the CPU stand-in
of everything but the capture (bitwise the per-replicate loop there: tests/test_device_loop.py).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field

import torch

from linpath.data.source import EvalSet
from linpath.errors import LinpathError
from linpath.runtime import progress as plain_progress
from linpath.runtime.gpu_batch import cuda_batch
from linpath.train.replicate import EVAL_BATCH, Replicate, progress_bar, sgd_update

WARMUP_STEPS = 3  # eager steps of a session before the first capture (on a side stream on CUDA)
MIN_GRAPH_STEPS = 32  # a learning rate gets a graph only with at least this many steps left
VERIFY_TOLERANCE = 5e-2  # first replay against the eager step: relative L2 of their state changes


class DeviceLoopWarning(UserWarning):
    pass


def _warn(message: str) -> None:
    """One line on stderr (warn_explicit at a location without source text prints no second line)."""
    warnings.warn_explicit(message, DeviceLoopWarning, "linpath.train.device_loop", 0)


def _switch(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name, default).strip().lower() or default
    if value not in allowed:
        raise LinpathError(f"${name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def applies(rep: Replicate, source) -> bool:
    """Whether the device loop trains `rep`: one process, a source with epoch plans, and CUDA
    (LINPATH_DEVICE_LOOP=auto, the default), any device (=1), never (=0)."""
    mode = _switch("LINPATH_DEVICE_LOOP", ("auto", "0", "1"), "auto")
    if mode == "0" or rep.world.active:
        return False
    if not hasattr(source, "epoch_plan") or not source.plans_epochs(rep.spec.data.augment):
        return False
    return mode == "1" or rep.dev.type == "cuda"


def graphs_wanted(dev: torch.device) -> bool:
    return dev.type == "cuda" and _switch("LINPATH_CUDA_GRAPHS", ("1", "0"), "1") == "1"


@dataclass
class LoopStats:
    """How a session's steps ran: replayed from a graph, or eagerly; why graphs were off."""

    graphed: int = 0
    eager: int = 0
    captures: int = 0
    graphs_off: str | None = None
    replay_differences: list[float] = field(default_factory=list)  # first replays against eager steps


def take_step(rep: Replicate, data, columns: torch.Tensor, lr: float, acc: torch.Tensor) -> None:
    """One step on the batch of an epoch plan's columns, its loss added to `acc` in place."""
    x, y = data.batch(columns)
    if rep.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    loss = sgd_update(rep.state, rep.state.model, x, y, lr, rep.spec, rep.dev)
    acc.add_(loss.float())


class StaticStep:
    """The full-batch step on tensors that live across steps: `load` copies a step's plan
    columns into `columns`; `run` is take_step on them. Captured per learning rate on CUDA,
    called directly elsewhere."""

    def __init__(self, rep: Replicate, data, acc: torch.Tensor, rows: int, batch_size: int):
        self.rep, self.data, self.acc, self.batch_size = rep, data, acc, batch_size
        self.columns = torch.zeros(rows, batch_size, dtype=torch.int64, device=rep.dev)

    def load(self, table: torch.Tensor, lo: int) -> None:
        self.columns.copy_(table[:, lo : lo + self.batch_size])

    def run(self, lr: float) -> None:
        take_step(self.rep, self.data, self.columns, lr, self.acc)


def capture(static: StaticStep, lr: float):
    """A CUDA graph of static.run(lr). Nothing runs during a capture: the state is untouched."""
    graph = torch.cuda.CUDAGraph()
    static.rep.state.optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static.run(lr)
    return graph


class Plans:
    """Epoch plans on the device: at most the current epoch's and the next one's."""

    def __init__(self, source, seed: int, batch_size: int, dev: torch.device, augment: bool):
        self.source, self.seed, self.batch_size, self.dev, self.augment = (
            source,
            seed,
            batch_size,
            dev,
            augment,
        )
        self.tables: dict[int, torch.Tensor] = {}

    def table(self, epoch: int) -> torch.Tensor:
        if epoch not in self.tables:
            self.prefetch(epoch)
        return self.tables[epoch]

    def prefetch(self, epoch: int) -> None:
        """Draw the epoch's plan and start its copy to the device (no wait on the host)."""
        if epoch in self.tables:
            return
        table = self.source.epoch_plan(self.seed, epoch, self.batch_size, self.augment)
        if self.dev.type == "cuda":
            table = table.pin_memory().to(self.dev, non_blocking=True)
        self.tables = {e: t for e, t in self.tables.items() if e >= epoch - 1}
        self.tables[epoch] = table


class Graphs:
    """The graph of the current learning rate, captured when a full-batch step first needs it
    and verified at its first replay; or none (graphs off: StaticStep.run is called instead)."""

    def __init__(self, rep: Replicate, static: StaticStep, wanted: bool, stats: LoopStats):
        self.rep, self.static, self.stats = rep, static, stats
        self.on = wanted
        self.lr: float | None = None
        self.graph = None
        self.verified = False
        if not wanted:
            stats.graphs_off = "not CUDA" if rep.dev.type != "cuda" else "LINPATH_CUDA_GRAPHS=0"

    def run(self, lr: float, step: int, end: int) -> None:
        """The loaded full-batch step `step` at `lr`; the session stops at `end`."""
        if self.on and lr != self.lr:
            self.lr, self.graph, self.verified = lr, None, False
            if _run_left(self.rep, step, end, lr) >= MIN_GRAPH_STEPS:
                self._capture(lr)
        if self.graph is None:
            self.static.run(lr)
            self.stats.eager += 1
        elif self.verified:
            self.graph.replay()
            self.stats.graphed += 1
        else:
            self._verified_replay(lr)

    @contextlib.contextmanager
    def side_stream(self, warming_up: bool):
        """Where warm-up steps run on CUDA when graphs are wanted (as torch.cuda.graphs asks)."""
        if not (self.on and warming_up and self.rep.dev.type == "cuda"):
            yield
            return
        main, side = torch.cuda.current_stream(self.rep.dev), torch.cuda.Stream(self.rep.dev)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            yield
        main.wait_stream(side)

    def _capture(self, lr: float) -> None:
        try:
            self.graph = capture(self.static, lr)
            self.stats.captures += 1
        except Exception as e:  # any failure: train on eagerly, from the untouched state
            self.graph = None
            self._off(f"capture failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
            if self.rep.dev.type == "cuda":
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize(self.rep.dev)
            self.rep.state.optimizer.zero_grad(set_to_none=True)

    def _verified_replay(self, lr: float) -> None:
        """The first replay, checked against the eager step from the same state and columns;
        on disagreement the eager step's state is kept and graphs go off."""
        groups = _state_groups(self.rep, self.static.acc)
        before = [[t.clone() for t in g] for g in groups]
        self.static.run(lr)
        eager = [[t.clone() for t in g] for g in groups]
        _copy(groups, before)
        self.graph.replay()
        difference = _relative_difference(before, eager, groups)
        self.stats.replay_differences.append(difference)
        if difference <= VERIFY_TOLERANCE:
            self.verified = True
            self.stats.graphed += 1
            return
        _copy(groups, eager)
        self.graph = None
        self.stats.eager += 1
        self._off(f"the first replay differs from the eager step by {difference:.2e} (relative)")

    def _off(self, why: str) -> None:
        self.on = False
        self.stats.graphs_off = why
        _warn(f"CUDA graphs off ({why}); training goes on eagerly")


def _state_groups(rep: Replicate, acc: torch.Tensor) -> list[list[torch.Tensor]]:
    """Every tensor a step changes, in groups compared apart: the model's parameters and
    buffers, SGD's momentum buffers, the loss sum."""
    s = rep.state
    momentum = [
        st["momentum_buffer"] for st in s.optimizer.state.values() if st.get("momentum_buffer") is not None
    ]
    return [list(s.model.state_dict().values()), momentum, [acc]]


def _relative_difference(before, a, b) -> float:
    """The largest over groups of |b - a| / |a - before| (L2 over the group's floating tensors);
    inf if an integer tensor differs. By group, so that a large change (the loss sum) cannot
    hide a wrong small one (the parameters' update)."""
    worst = 0.0
    for g0, ga, gb in zip(before, a, b):
        num = den = 0.0
        for t0, ta, tb in zip(g0, ga, gb):
            if not ta.is_floating_point():
                if not torch.equal(ta, tb):
                    return float("inf")
                continue
            num += float((tb.double() - ta.double()).pow(2).sum())
            den += float((ta.double() - t0.double()).pow(2).sum())
        if num > 0.0:
            worst = max(worst, (num / den) ** 0.5 if den > 0 else float("inf"))
    return worst


def _copy(groups, saved) -> None:
    for group, copies in zip(groups, saved):
        for t, c in zip(group, copies):
            t.copy_(c)


def _run_left(rep: Replicate, step: int, end: int, lr: float) -> int:
    """Steps from `step` on (up to MIN_GRAPH_STEPS) that use learning rate `lr`."""
    k = step
    while k < end and k - step < MIN_GRAPH_STEPS and rep.schedule.lr_at(k) == lr:
        k += 1
    return k - step


def _evaluation_on_device(rep: Replicate) -> None:
    """On CUDA the per-epoch test set channels-last, in batches as large as memory allows."""
    hooks, model = rep.hooks, rep.state.model
    if rep.dev.type != "cuda" or not len(hooks.evalset):
        return
    inputs = hooks.evalset.inputs
    if rep.channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        hooks.evalset = EvalSet(inputs, hooks.evalset.labels, hooks.evalset.name)
    model.eval()
    hooks.eval_batch = cuda_batch(model, inputs, EVAL_BATCH)
    model.train()


def train(rep: Replicate, source, seed: int, end: int, progress: bool) -> LoopStats:
    """Steps of `rep` until `end`, with its hooks after each; see the module docstring."""
    s, spec, schedule = rep.state, rep.spec, rep.schedule
    batch, n, ipe = spec.data.batch_size, source.num_train_examples, schedule.iterations_per_epoch
    data = source.resident(rep.dev, spec.data.augment)
    plans = Plans(source, seed, batch, rep.dev, spec.data.augment)
    acc = torch.full((), float(s.loss_sum), dtype=torch.float32, device=rep.dev)
    static = StaticStep(rep, data, acc, len(plans.table(s.step // ipe)), batch)
    stats = LoopStats()
    graphs = Graphs(rep, static, graphs_wanted(rep.dev), stats)
    _evaluation_on_device(rep)
    bar = progress_bar(schedule.total, s.step, f"train replicate {rep.r}", progress and not rep.hooks.plain)
    taken = 0
    while s.step < end:
        epoch, k = divmod(s.step, ipe)
        table, lo, hi = plans.table(epoch), k * batch, min((k + 1) * batch, n)
        lr = schedule.lr_at(s.step)
        if hi - lo == batch and taken >= WARMUP_STEPS:
            static.load(table, lo)
            graphs.run(lr, s.step, end)
        else:
            with graphs.side_stream(taken < WARMUP_STEPS):
                take_step(rep, data, table[:, lo:hi], lr, acc)
            stats.eager += 1
        taken += 1
        s.step += 1
        s.loss_sum, s.loss_count = acc, s.loss_count + 1
        if s.step % ipe == 0 and s.step < end:
            plans.prefetch(s.step // ipe)  # drawn while the device runs this epoch's queued steps
        bar.update(1)
        if (accuracy := rep.after_step()) is not None:
            bar.set_postfix(test_acc=f"{accuracy:.4f}")
        if s.loss_sum is not acc:  # the epoch-end hooks read the sum and reset it
            acc.zero_()
    bar.close()
    if progress and rep.dev.type == "cuda":
        plain_progress.line(_summary(rep, stats))
    return stats


def _summary(rep: Replicate, stats: LoopStats) -> str:
    off = f"; graphs off: {stats.graphs_off}" if stats.graphs_off else ""
    return (
        f"train replicate {rep.r}: {stats.graphed} steps replayed from {stats.captures} CUDA graph(s), "
        f"{stats.eager} eager{off}"
    )
