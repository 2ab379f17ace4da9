"""torch.distributed under torchrun: who am I, and the few collective steps linpath needs.

linpath has no launcher of its own. Under `torchrun` the environment names the rank and the
world size; outside it everything runs as rank 0 of 1 and no process group is created.
Backend: nccl on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def device(self, device: str) -> str:
        """Under torchrun each process takes the GPU of its local rank."""
        if self.active and device in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return device

    def barrier(self) -> None:
        if self.active:
            barrier_if_initialized()

    def broadcast(self, obj):
        """rank 0's `obj` on every rank."""
        return broadcast_if_initialized(obj) if self.active else obj


def init(device: str = "auto") -> World:
    """Join the process group torchrun set up (if any) and return this process's place in it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return World(rank, size, local_rank)


def is_initialized() -> bool:
    """Whether this process is in a process group (under torchrun, after init)."""
    return dist.is_available() and dist.is_initialized()


def barrier_if_initialized() -> None:
    """Wait for every rank when a process group exists (code below the CLI, such as the API's
    sharded planes, that has no World to hand); without one, return at once."""
    if is_initialized():
        dist.barrier()


def broadcast_if_initialized(obj):
    """Rank 0's `obj` on every rank when a process group exists; else `obj` itself."""
    if is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj


def shutdown(clean: bool = False) -> None:
    """Leave the process group. After a clean run every rank first waits for the others (gloo: at
    most a minute), so that none tears its connections down while a peer still uses them; after
    an error it leaves at once (the others are told by the closed connections)."""
    if not dist.is_initialized():
        return
    if clean:
        with contextlib.suppress(Exception):  # a peer that failed meanwhile: leave all the same
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=60))
            else:
                dist.barrier()
    dist.destroy_process_group()
