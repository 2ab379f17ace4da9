"""Training one replicate: the paper's checkpoints, a per-epoch log, exact resumption.

Everything random in a replicate is a pure function of its seed and the step (init, the
permutation of each epoch, each batch's augmentation), and the learning rate is a pure
function of the step. So the resume file only needs the model, the optimizer and the step,
and a run killed at any moment continues from its last saved state to bitwise the same final
weights as an uninterrupted run (on the same CPU). The resume file is saved at every kept
step and every epoch end.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import models
from .data.memory import derived_seed
from .distributed import World
from .errors import LinpathError
from .evaluate import autocast, evaluate_model
from .spec import Spec
from .steps import Step, iterations_per_epoch, kept_steps, parse_step_list
from .store import RunDir, atomic_write_text, load_tensors, save_tensors, write_csv

LOG_COLUMNS = ["iteration", "epoch", "lr", "train_loss", "test_loss", "test_accuracy", "seconds"]


@dataclass(frozen=True)
class Schedule:
    """Steps and learning rates of one spec on one data set, in iterations."""

    iterations_per_epoch: int
    total: int
    lr: float
    milestones: tuple[int, ...]
    gamma: float
    warmup: int

    @classmethod
    def of(cls, spec: Spec, num_train_examples: int) -> "Schedule":
        ipe = iterations_per_epoch(num_train_examples, spec.data.batch_size)
        t = spec.train
        total = Step.parse(t.training_steps).to_iterations(ipe)
        if total <= 0:
            raise LinpathError(f"--training-steps {t.training_steps} is zero iterations")
        warmup = Step.parse(t.warmup_steps).to_iterations(ipe) if t.warmup_steps else 0
        milestones = tuple(s.to_iterations(ipe) for s in parse_step_list(t.milestone_steps))
        return cls(ipe, total, t.lr, milestones, t.gamma, warmup)

    def lr_at(self, step: int) -> float:
        """Learning rate of the update from `step` to `step + 1` (OpenLTH's convention:
        warm-up factor step/warmup, times gamma for each milestone <= step)."""
        factor = min(1.0, step / self.warmup) if self.warmup else 1.0
        return self.lr * factor * self.gamma ** sum(m <= step for m in self.milestones)

    def batch_at(self, step: int, batch_size: int, num_examples: int) -> int:
        """Size of the global batch of `step` (the last batch of an epoch may be short)."""
        return min(batch_size, num_examples - (step % self.iterations_per_epoch) * batch_size)

    def kept(self) -> list[int]:
        return kept_steps(self.total)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LinpathError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise LinpathError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None


def build_model(spec: Spec, num_classes: int, seed: int) -> torch.nn.Module:
    return models.build(spec.model.model, num_classes, derived_seed(seed, "init"), spec.model.init, spec.model.bn_init)


def train_replicate(spec: Spec, run: RunDir, r: int, source, device: str = "cpu", progress: bool = True,
                    stop_after: int | None = None, data_seed: int | None = None, start: dict | None = None,
                    world: World = World()) -> None:
    """Train replicate r to the end (or, for tests, until `stop_after` steps), resuming
    from its resume file if one exists. Writes checkpoints, the log and a DONE marker.

    For spawned children (spawn.py): `start` ({"model", "optimizer" (optional), "step"}) replaces
    the initialization when there is no resume file, and `data_seed` replaces the replicate's
    seed for the data order and augmentation.

    Under torchrun (`world`), the model is wrapped in DistributedDataParallel, each rank takes
    its share of every global batch, the loss is scaled so that the averaged gradient is the
    global batch's mean gradient whatever the shares' sizes, and only rank 0 writes files."""
    if world.broadcast(run.done_marker(r).exists()):
        return
    dev = resolve_device(device)
    seed = spec.train.seed + r
    schedule = Schedule.of(spec, source.num_train_examples)
    keep = set(schedule.kept())
    model = build_model(spec, source.num_classes, seed).to(dev)
    # Convnets run faster with channels-last (NHWC) activations on CPU and GPU alike.
    channels_last = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = model  # what the forward pass calls: the model, or its DDP wrapper under torchrun
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.train.lr, momentum=spec.train.momentum,
                                weight_decay=spec.train.weight_decay)
    step, loss_sum, loss_count = 0, 0.0, 0
    if run.resume_file(r).exists():
        state = load_tensors(run.resume_file(r))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, loss_sum, loss_count = int(state["step"]), float(state["loss_sum"]), int(state["loss_count"])
    elif start is not None:
        model.load_state_dict(start["model"])
        if start.get("optimizer") is not None:
            optimizer.load_state_dict(start["optimizer"])
        step = int(start["step"])
    main = world.is_main
    if main:
        _truncate_log(run, r, step)
    if main and step == 0:
        save_tensors(run.checkpoint(r, 0), _cpu_state(model))
    if world.active:
        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    evalset = source.eval_set("test", dev)
    batches = source.train_batches(seed if data_seed is None else data_seed, spec.data.batch_size, start_step=step, device=dev, augment=spec.data.augment,
                                   rank=world.rank, world_size=world.size)
    end = schedule.total if stop_after is None else min(schedule.total, stop_after)
    bar = tqdm(total=schedule.total, initial=step, desc=f"train replicate {r}", unit="it",
               disable=not (progress and main), dynamic_ncols=True, leave=False)
    started = time.time()
    model.train()
    while step < end:
        inputs, labels = next(batches)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_at(step)
        with autocast(dev, spec.train.precision):
            if world.active:
                loss = F.cross_entropy(net(inputs), labels, reduction="sum") * (world.size / schedule.batch_at(step, spec.data.batch_size, source.num_train_examples))
            else:
                loss = F.cross_entropy(net(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        loss_sum = loss_sum + loss.detach().float()  # stays on the device: no sync per step
        loss_count += 1
        bar.update(1)
        if not main:
            continue
        if step in keep:
            save_tensors(run.checkpoint(r, step), _cpu_state(model))
        epoch_end = step % schedule.iterations_per_epoch == 0 or step == schedule.total
        if epoch_end:
            if not torch.isfinite(torch.as_tensor(loss_sum)):
                raise LinpathError(f"training diverged before iteration {step} of replicate {r} (train loss is not finite)")
            result = evaluate_model(model, evalset, precision=spec.train.precision)
            model.train()
            _append_log(run, r, [step, step / schedule.iterations_per_epoch, schedule.lr_at(step - 1),
                                 float(loss_sum) / loss_count, result.loss, 1 - result.error, round(time.time() - started, 3)])
            loss_sum, loss_count = 0.0, 0
            bar.set_postfix(test_acc=f"{1 - result.error:.4f}")
        if epoch_end or step in keep:
            save_tensors(run.resume_file(r), {"model": _cpu_state(model), "optimizer": optimizer.state_dict(),
                                              "step": step, "loss_sum": float(loss_sum), "loss_count": loss_count})
    bar.close()
    if main and step == schedule.total:
        atomic_write_text(run.done_marker(r), f"{step}\n")
        run.resume_file(r).unlink(missing_ok=True)
    world.barrier()


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}


def read_log(run: RunDir, r: int) -> list[dict]:
    path = run.train_log(r)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_log(run: RunDir, r: int, rows: list[list]) -> None:
    write_csv(run.train_log(r), LOG_COLUMNS, rows)


def _append_log(run: RunDir, r: int, row: list) -> None:
    rows = [[d[c] for c in LOG_COLUMNS] for d in read_log(run, r)]
    _write_log(run, r, rows + [row])


def _truncate_log(run: RunDir, r: int, step: int) -> None:
    """Drop log rows written after the state we resume from (they will be written again)."""
    rows = read_log(run, r)
    kept = [[d[c] for c in LOG_COLUMNS] for d in rows if int(d["iteration"]) <= step]
    if len(kept) != len(rows) or not run.train_log(r).exists():
        _write_log(run, r, kept)
