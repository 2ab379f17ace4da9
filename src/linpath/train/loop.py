"""Training one replicate: the paper's checkpoints, a per-epoch log, exact resumption.

Everything random in a replicate is a pure function of its seed and the step (init, the
permutation of each epoch, each batch's augmentation), and the learning rate is a pure
function of the step. So the resume file only needs the model, the optimizer and the step,
and a run killed at any moment continues from its last saved state to bitwise the same final
weights as an uninterrupted run (on the same CPU). The resume file is saved at every kept
step and every epoch end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from linpath.config.schedule import Schedule
from linpath.config.spec import Spec, build_model
from linpath.engine.scoring import evaluate_model
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tensors import load_tensors, save_tensors
from linpath.runtime import progress as plain_progress
from linpath.runtime.device import autocast, exact_fp32, resolve_device
from linpath.runtime.distributed import World
from linpath.train.log import append_log, truncate_log


@dataclass
class _State:
    """What one replicate's training holds between steps."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    loss_sum: object = 0.0  # a device tensor while training: no host sync per step
    loss_count: int = 0
    started: float = field(default_factory=time.time)


def _build(spec: Spec, source, seed: int, dev: torch.device) -> tuple[_State, bool]:
    model = build_model(spec, source.num_classes, seed).to(dev)
    # Convnets run faster with channels-last (NHWC) activations on CPU and GPU alike.
    channels_last = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=spec.train.lr,
        momentum=spec.train.momentum,
        weight_decay=spec.train.weight_decay,
    )
    return _State(model, optimizer), channels_last


def _restore(state: _State, run: RunDir, r: int, start: dict | None) -> None:
    """Continue from the resume file, else from `start` (spawned children), else step 0."""
    if run.resume_file(r).exists():
        saved = load_tensors(run.resume_file(r))
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.step, state.loss_sum, state.loss_count = (
            int(saved["step"]),
            float(saved["loss_sum"]),
            int(saved["loss_count"]),
        )
    elif start is not None:
        state.model.load_state_dict(start["model"])
        if start.get("optimizer") is not None:
            state.optimizer.load_state_dict(start["optimizer"])
        state.step = int(start["step"])


def _cpu_state(model: torch.nn.Module) -> dict:
    return {
        k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
        for k, v in model.state_dict().items()
    }


def _save_resume(run: RunDir, r: int, s: _State) -> None:
    save_tensors(
        run.resume_file(r),
        {
            "model": _cpu_state(s.model),
            "optimizer": s.optimizer.state_dict(),
            "step": s.step,
            "loss_sum": float(s.loss_sum),
            "loss_count": s.loss_count,
        },
    )


def _sgd_step(s: _State, net, inputs, labels, lr: float, spec: Spec, dev, world: World, batch: int) -> None:
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    with autocast(dev, spec.train.precision):
        if world.active:  # the averaged gradient is the global batch's mean gradient, whatever the shares
            loss = F.cross_entropy(net(inputs), labels, reduction="sum") * (world.size / batch)
        else:
            loss = F.cross_entropy(net(inputs), labels)
    s.optimizer.zero_grad(set_to_none=True)
    with exact_fp32(dev, spec.train.precision):  # the backward pass in fp32 too (no TF32 on CUDA)
        loss.backward()
    s.optimizer.step()
    s.step += 1
    s.loss_sum = s.loss_sum + loss.detach().float()
    s.loss_count += 1


def _end_epoch(s: _State, run: RunDir, r: int, schedule: Schedule, evalset, precision: str) -> float:
    """Evaluate on the test set, append the log row, reset the running train loss; returns the accuracy."""
    if not torch.isfinite(torch.as_tensor(s.loss_sum)):
        raise LinpathError(
            f"training diverged before iteration {s.step} of replicate {r} (train loss is not finite)"
        )
    result = evaluate_model(s.model, evalset, precision=precision)
    s.model.train()
    append_log(
        run,
        r,
        [
            s.step,
            s.step / schedule.iterations_per_epoch,
            schedule.lr_at(s.step - 1),
            float(s.loss_sum) / s.loss_count,
            result.loss,
            1 - result.error,
            round(time.time() - s.started, 3),
        ],
    )
    s.loss_sum, s.loss_count = 0.0, 0
    return 1 - result.error


def train_replicate(
    spec: Spec,
    run: RunDir,
    r: int,
    source,
    device: str = "cpu",
    progress: bool = True,
    stop_after: int | None = None,
    data_seed: int | None = None,
    start: dict | None = None,
    world: World = World(),
) -> None:
    """Train replicate r to the end (or, for tests, until `stop_after` steps), resuming from its
    resume file if one exists; writes checkpoints, the log and a DONE marker.

    `start` ({"model", "optimizer" (optional), "step"}) replaces the initialization when there is
    no resume file, and `data_seed` the replicate's seed for data order and augmentation
    (spawned children). Under torchrun the model is wrapped in DistributedDataParallel, each
    rank takes its share of every global batch, and only rank 0 writes files."""
    if world.broadcast(run.done_marker(r).exists()):
        return
    dev = resolve_device(device)
    seed = spec.train.seed + r
    schedule = Schedule.of(spec, source.num_train_examples)
    s, channels_last = _build(spec, source, seed, dev)
    _restore(s, run, r, start)
    if world.is_main:
        truncate_log(run, r, s.step)
        if s.step == 0:
            save_tensors(run.checkpoint(r, 0), _cpu_state(s.model))
    net = (
        DistributedDataParallel(s.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        if world.active
        else s.model
    )
    batches = source.train_batches(
        seed if data_seed is None else data_seed,
        spec.data.batch_size,
        start_step=s.step,
        device=dev,
        augment=spec.data.augment,
        rank=world.rank,
        world_size=world.size,
    )
    end = schedule.total if stop_after is None else min(schedule.total, stop_after)
    _loop(s, net, batches, run, r, spec, schedule, source, dev, world, end, channels_last, progress)
    if world.is_main and s.step == schedule.total:
        atomic_write_text(run.done_marker(r), f"{s.step}\n")
        run.resume_file(r).unlink(missing_ok=True)
    world.barrier()


def _progress_bar(total: int, initial: int, desc: str, enabled: bool):
    """A tqdm bar that redraws at most twice a second (no per-step terminal writes)."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="it",
        disable=not enabled,
        dynamic_ncols=True,
        leave=False,
        mininterval=0.5,
    )


@dataclass
class Hooks:
    """What happens after a step of one replicate: a checkpoint at kept steps, the log and the
    resume file at epoch ends (shared by the per-replicate and the batched loops)."""

    run: RunDir
    spec: Spec
    schedule: Schedule
    evalset: object
    plain: bool
    keep: frozenset = frozenset()

    def __post_init__(self):
        self.keep = frozenset(self.schedule.kept())

    def after_step(self, s: _State, r: int) -> float | None:
        """Run the hooks of s.step; returns the test accuracy at an epoch end, else None."""
        kept = s.step in self.keep
        if kept:
            save_tensors(self.run.checkpoint(r, s.step), _cpu_state(s.model))
        epoch_end = s.step % self.schedule.iterations_per_epoch == 0 or s.step == self.schedule.total
        accuracy = None
        if epoch_end:
            accuracy = _end_epoch(s, self.run, r, self.schedule, self.evalset, self.spec.train.precision)
            if self.plain:
                plain_progress.line(
                    f"train replicate {r}: iteration {s.step}/{self.schedule.total} "
                    f"(epoch {s.step / self.schedule.iterations_per_epoch:.2f}), test accuracy {accuracy:.4f}"
                )
        if epoch_end or kept:
            _save_resume(self.run, r, s)
        return accuracy


def _loop(
    s: _State,
    net,
    batches,
    run: RunDir,
    r: int,
    spec: Spec,
    schedule: Schedule,
    source,
    dev,
    world: World,
    end: int,
    channels_last: bool,
    progress: bool,
) -> None:
    """Steps until `end`, with the hooks after each (on rank 0)."""
    plain = progress and world.is_main and plain_progress.plain()
    hooks = Hooks(run, spec, schedule, source.eval_set("test", dev), plain)
    bar = _progress_bar(
        schedule.total, s.step, f"train replicate {r}", progress and world.is_main and not plain
    )
    s.started = time.time()
    s.model.train()
    while s.step < end:
        inputs, labels = next(batches)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        batch = schedule.batch_at(s.step, spec.data.batch_size, source.num_train_examples)
        _sgd_step(s, net, inputs, labels, schedule.lr_at(s.step), spec, dev, world, batch)
        bar.update(1)
        if world.is_main and (accuracy := hooks.after_step(s, r)) is not None:
            bar.set_postfix(test_acc=f"{accuracy:.4f}")
    bar.close()
