"""Training one replicate: the paper's checkpoints, a per-epoch log, exact resumption.

Everything random in a replicate is a pure function of its seed and the step (init, the
permutation of each epoch, each batch's augmentation), and the learning rate is a pure
function of the step. So the resume file only needs the model, the optimizer and the step,
and a run killed at any moment continues from its last saved state to bitwise the same final
weights as an uninterrupted run (on the same CPU). The resume file is saved at every kept
step and every epoch end.

The replicate's life cycle (build, restore, start, hooks after each step, finish) is
replicate.py's, shared with the batched loop (together.py) and the device loop
(device_loop.py, the default on CUDA); this module holds the per-replicate loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from linpath.config.spec import Spec
from linpath.io.rundir import RunDir
from linpath.runtime import progress as plain_progress
from linpath.runtime.device import resolve_device
from linpath.runtime.distributed import World
from linpath.train import device_loop
from linpath.train.replicate import Hooks, Replicate, State, StepCallback, progress_bar, sgd_update

_State = State  # the name tests and older callers use
__all__ = ["Branch", "Hooks", "Replicate", "State", "train_replicate"]


@dataclass(frozen=True)
class Branch:
    """A training that is not a replicate's own from its init: a spawned child's `start`
    ({"model", "optimizer" (optional), "step"}, replacing the initialization when there is no
    resume file) and `data_seed` (replacing the replicate's seed for data order and
    augmentation), or a cut at `stop_after` steps (tests; a "killed" training)."""

    start: dict | None = None
    data_seed: int | None = None
    stop_after: int | None = None


def train_replicate(
    spec: Spec,
    run: RunDir,
    r: int,
    source,
    device: str = "cpu",
    progress: bool = True,
    world: World = World(),
    callbacks: tuple[StepCallback, ...] = (),
    branch: Branch = Branch(),
) -> None:
    """Train replicate r to the end (or to branch.stop_after), resuming from its resume file if
    one exists; writes checkpoints, the log and a DONE marker; `branch` starts it elsewhere (a
    spawned child). Under torchrun the model is wrapped in DistributedDataParallel, each
    rank takes its share of every global batch, and only rank 0 writes files. On CUDA (one
    process, in-memory data) the device loop trains it: the same steps, without host
    synchronization, in a CUDA graph (device_loop.py). `callbacks` run after every step."""
    if world.broadcast(run.done_marker(r).exists()):
        return
    dev = resolve_device(device)
    rep = Replicate(spec, run, r, source, dev, world).restore(branch.start)
    on_device = device_loop.applies(rep, source)  # before anything is written: it checks its switches
    rep.start(source.eval_set("test", dev), progress and world.is_main and plain_progress.plain(), callbacks)
    seed = rep.seed if branch.data_seed is None else branch.data_seed
    end = rep.end(branch.stop_after)
    if on_device:
        device_loop.train(rep, source, seed, end, progress)
    else:
        _loop(rep, source, seed, end, progress)
    rep.finish()
    world.barrier()


def _loop(rep: Replicate, source, seed: int, end: int, progress: bool) -> None:
    """Steps until `end`, with the hooks after each (on rank 0)."""
    s, spec, schedule, dev, world = rep.state, rep.spec, rep.schedule, rep.dev, rep.world
    net = (
        DistributedDataParallel(s.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        if world.active
        else s.model
    )
    batches = source.train_batches(
        seed,
        spec.data.batch_size,
        start_step=s.step,
        device=dev,
        augment=spec.data.augment,
        rank=world.rank,
        world_size=world.size,
    )
    bar_on = progress and world.is_main and not rep.hooks.plain
    bar = progress_bar(schedule.total, s.step, f"train replicate {rep.r}", bar_on)
    while s.step < end:
        inputs, labels = next(batches)
        if rep.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        batch = schedule.batch_at(s.step, spec.data.batch_size, source.num_train_examples)
        loss = sgd_update(s, net, inputs, labels, schedule.lr_at(s.step), spec, dev, world, batch)
        s.step += 1
        s.loss_sum = s.loss_sum + loss.float()
        s.loss_count += 1
        bar.update(1)
        if (accuracy := rep.after_step()) is not None:
            bar.set_postfix(test_acc=f"{accuracy:.4f}")
    bar.close()
