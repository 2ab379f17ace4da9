"""One replicate's life cycle, shared by every training loop: the per-replicate loop (loop.py),
the batched loop (together.py) and the device loop (device_loop.py).

A loop builds a `Replicate` (its model, optimizer and schedule as it trains alone), restores
it (resume file, spawned start, or step 0), starts it (the log truncated to the restored step,
the step-0 checkpoint saved), runs `after_step` after every SGD update (a checkpoint at kept
steps, the log row at epoch ends, the resume file at both) and finishes it (DONE, resume file
removed). Only the steps themselves differ between loops, so the files a replicate leaves
behind are the same whichever loop trained it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from linpath.config.schedule import Schedule
from linpath.config.spec import Spec, build_model
from linpath.engine.scoring import evaluate_model
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tensors import load_tensors, save_tensors
from linpath.runtime import progress as plain_progress
from linpath.runtime.device import autocast, exact_fp32
from linpath.runtime.distributed import World
from linpath.train.log import append_log, truncate_log

EVAL_BATCH = 2000  # the per-epoch test evaluation's batch (the CPU's; device_loop picks a larger one on CUDA)


@dataclass
class State:
    """What one replicate's training holds between steps."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    loss_sum: object = 0.0  # a device tensor while training: no host sync per step
    loss_count: int = 0
    started: float = field(default_factory=time.time)


def build_state(spec: Spec, source, seed: int, dev: torch.device) -> tuple[State, bool]:
    """The replicate's model (channels-last for convnets) and SGD optimizer; whether channels-last."""
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
    return State(model, optimizer), channels_last


def restore_state(state: State, run: RunDir, r: int, start: dict | None) -> None:
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


def cpu_state(model: torch.nn.Module) -> dict:
    return {
        k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
        for k, v in model.state_dict().items()
    }


def save_resume(run: RunDir, r: int, s: State) -> None:
    save_tensors(
        run.resume_file(r),
        {
            "model": cpu_state(s.model),
            "optimizer": s.optimizer.state_dict(),
            "step": s.step,
            "loss_sum": float(s.loss_sum),
            "loss_count": s.loss_count,
        },
    )


def sgd_update(
    s: State, net, inputs, labels, lr: float, spec: Spec, dev, world: World = World(), batch: int = 0
) -> torch.Tensor:
    """One SGD update of s.model on a batch; returns the batch's loss, detached, on the device.
    Every loop's step is this one (the device loop captures it in a CUDA graph), so a replicate's
    numbers do not depend on the loop that trained it."""
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
    return loss.detach()


def end_epoch(
    s: State, run: RunDir, r: int, schedule: Schedule, evalset, precision: str, eval_batch: int = EVAL_BATCH
) -> float:
    """Evaluate on the test set, append the log row, reset the running train loss; returns the accuracy."""
    if not torch.isfinite(torch.as_tensor(s.loss_sum)):
        raise LinpathError(
            f"training diverged before iteration {s.step} of replicate {r} (train loss is not finite)"
        )
    result = evaluate_model(s.model, evalset, batch_size=eval_batch, precision=precision)
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


def progress_bar(total: int, initial: int, desc: str, enabled: bool):
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
    resume file at epoch ends (shared by every loop)."""

    run: RunDir
    spec: Spec
    schedule: Schedule
    evalset: object
    plain: bool
    keep: frozenset = frozenset()
    eval_batch: int = EVAL_BATCH

    def __post_init__(self):
        self.keep = frozenset(self.schedule.kept())

    def saves_at(self, step: int) -> bool:
        """Whether after_step of `step` writes files (so the optimizer's state must be current)."""
        return step in self.keep or self.epoch_end(step)

    def epoch_end(self, step: int) -> bool:
        return step % self.schedule.iterations_per_epoch == 0 or step == self.schedule.total

    def after_step(self, s: State, r: int) -> float | None:
        """Run the hooks of s.step; returns the test accuracy at an epoch end, else None."""
        kept = s.step in self.keep
        if kept:
            save_tensors(self.run.checkpoint(r, s.step), cpu_state(s.model))
        epoch_end = self.epoch_end(s.step)
        accuracy = None
        if epoch_end:
            accuracy = end_epoch(
                s, self.run, r, self.schedule, self.evalset, self.spec.train.precision, self.eval_batch
            )
            if self.plain:
                plain_progress.line(
                    f"train replicate {r}: iteration {s.step}/{self.schedule.total} "
                    f"(epoch {s.step / self.schedule.iterations_per_epoch:.2f}), test accuracy {accuracy:.4f}"
                )
        if epoch_end or kept:
            save_resume(self.run, r, s)
        return accuracy


StepCallback = Callable[["Replicate"], None]


class Replicate:
    """One replicate of a run as a loop drives it (see the module docstring). Files are written
    on the main rank only; `callbacks` run after the hooks of every step (tests record states)."""

    def __init__(self, spec: Spec, run: RunDir, r: int, source, dev: torch.device, world: World = World()):
        self.spec, self.run, self.r, self.dev, self.world = spec, run, r, dev, world
        self.seed = spec.train.seed + r
        self.schedule = Schedule.of(spec, source.num_train_examples)
        self.state, self.channels_last = build_state(spec, source, self.seed, dev)
        self.hooks: Hooks | None = None
        self.callbacks: Sequence[StepCallback] = ()

    def restore(self, start: dict | None = None) -> Replicate:
        restore_state(self.state, self.run, self.r, start)
        return self

    def start(self, evalset, plain: bool, callbacks: Sequence[StepCallback] = ()) -> None:
        """Truncate the log to the restored step and save the step-0 checkpoint (main rank),
        then set the hooks up and start the clock."""
        if self.world.is_main:
            truncate_log(self.run, self.r, self.state.step)
            if self.state.step == 0:
                save_tensors(self.run.checkpoint(self.r, 0), cpu_state(self.state.model))
        self.hooks = Hooks(self.run, self.spec, self.schedule, evalset, plain)
        self.callbacks = tuple(callbacks)
        self.state.started = time.time()
        self.state.model.train()

    def end(self, stop_after: int | None) -> int:
        """The step this session stops at: the schedule's end, or `stop_after` (tests)."""
        return self.schedule.total if stop_after is None else min(self.schedule.total, stop_after)

    def saves_at(self, step: int) -> bool:
        return self.hooks.saves_at(step)

    def after_step(self) -> float | None:
        """The hooks of the step just taken (main rank), then the callbacks; the test accuracy
        at an epoch end, else None."""
        accuracy = self.hooks.after_step(self.state, self.r) if self.world.is_main else None
        for callback in self.callbacks:
            callback(self)
        return accuracy

    def finish(self) -> None:
        """DONE and no resume file once the schedule's last step is taken (main rank)."""
        if self.world.is_main and self.state.step == self.schedule.total:
            atomic_write_text(self.run.done_marker(self.r), f"{self.state.step}\n")
            self.run.resume_file(self.r).unlink(missing_ok=True)
