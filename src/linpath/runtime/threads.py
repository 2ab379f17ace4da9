"""How many threads torch's intra-op pool uses: what this process may really use, not the
machine's core count.

torch starts one intra-op thread per core of the machine, whatever this process may use: a CPU
affinity mask (taskset, a cluster's cpuset), a container's CPU quota, the other ranks of torchrun
on the same node. And beside other work each parallel op waits for its slowest thread, which the
other work has descheduled, while the waiting threads spin on cores the other work needs (issue
31: a LeNet loop 7.6x slower beside one process doing 2-thread products, where fair sharing
costs 2x).

The count, the first of these that applies:
  1. threads=N (the command line's --threads N, the API's keyword): the caller's choice;
  2. LINPATH_THREADS=N in the environment;
  3. OMP_NUM_THREADS, which torch reads itself: left alone (under torchrun, "1" is what torchrun
     sets when it is unset, not a user's choice, and counts as unset);
  4. the usable CPUs (the affinity mask, capped by a cgroup v1 or v2 CPU quota) divided among
     torchrun's local ranks (LOCAL_WORLD_SIZE), and no more than the CPUs other work leaves
     idle when the command starts (the machine's busy time over SAMPLE_S seconds, /proc/stat),
     at least 1.
Before torch is imported (the command line applies this first thing), where other work keeps
at least half a CPU busy, waiting OpenMP threads are also told to sleep rather than spin
(OMP_WAIT_POLICY=PASSIVE, unless the environment says how they wait): OpenMP reads it once,
when torch loads it. On a quiet machine they spin as OpenMP's default has them: sleeping costs
a small model's training 1.8x there (benchmarks/README.md). And a small model (no convolution,
under SMALL_MODEL_PARAMETERS parameters) is evaluated on one thread unless the count was chosen
(1-3 above): its products are too small to split, and two threads only wait on each other.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from linpath.errors import LinpathError

ENV = "LINPATH_THREADS"
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")  # how OpenMP threads wait
CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
PROC_STAT = Path("/proc/stat")
SAMPLE_S = 0.2  # how long the command line samples the machine's busy time at its start
BUSY_CPUS = 0.5  # other work keeping this much busy makes waiting threads sleep
SMALL_MODEL_PARAMETERS = 100_000  # LeNet-300-100 has 266,610; examples/own_model.py's MLP 5,699


@dataclass(frozen=True)
class Choice:
    """A thread count and where it came from: "threads", LINPATH_THREADS, OMP_NUM_THREADS (count
    None: torch's own reading of it stands), "usable CPUs" or "idle CPUs" (fewer: a busy machine)."""

    count: int | None
    source: str

    @property
    def explicit(self) -> bool:
        return self.source not in ("usable CPUs", "idle CPUs")


_applied: Choice | None = None  # the last apply()'s choice in this process


def positive_count(text, what: str) -> int:
    """A thread count from the user: an integer >= 1, or one line naming `what` gave what."""
    try:
        n = int(str(text).strip())
    except ValueError:
        n = 0
    if isinstance(text, bool) or n < 1:
        raise LinpathError(f"{what} must be a positive integer (threads), got {text!r}")
    return n


def affinity_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_limit(folder: Path) -> float | None:
    """CPUs allowed by a cgroup v2 folder's cpu.max ("max 100000" or "QUOTA PERIOD")."""
    parts = (_read(folder / "cpu.max") or "").split()
    try:
        return int(parts[0]) / int(parts[1]) if len(parts) == 2 and parts[0] != "max" else None
    except (ValueError, ZeroDivisionError):
        return None


def _v1_limit(folder: Path) -> float | None:
    """CPUs allowed by a cgroup v1 folder's cpu.cfs_quota_us / cpu.cfs_period_us (-1: none)."""
    try:
        quota = int(_read(folder / "cpu.cfs_quota_us") or "-1")
        period = int(_read(folder / "cpu.cfs_period_us") or "0")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _folders(base: Path, path: str) -> list[Path]:
    """`base`/`path` and each folder above it up to `base`: a parent's quota binds its children,
    and inside a container the mount is the container's own cgroup, not the path it names."""
    parts = [p for p in path.split("/") if p]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_cpus(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> float | None:
    """The CPUs this process's cgroups allow (the smallest quota on its path, v1 or v2), or None."""
    limits = []
    for line in (_read(self_cgroup) or "").splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":  # cgroup v2 (unified)
            limits += [_v2_limit(f) for f in _folders(root, path)]
        elif "cpu" in controllers.split(","):  # cgroup v1, e.g. "cpu,cpuacct"
            for base in dict.fromkeys((root / controllers, root / "cpu")):
                limits += [_v1_limit(f) for f in _folders(base, path)]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def local_ranks(environ=os.environ) -> int:
    """Processes of this job on this node: torchrun's LOCAL_WORLD_SIZE, else 1."""
    try:
        return max(1, int(environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def usable_cpus() -> float:
    """The CPUs this process may use: its affinity mask, capped by its cgroups' CPU quota."""
    quota = cgroup_cpus()
    return min(affinity_cpus(), quota) if quota is not None else affinity_cpus()


def usable_threads(environ=os.environ, cpus: float | None = None) -> int:
    """The usable CPUs (default usable_cpus()) shared among the local ranks, at least 1."""
    cpus = usable_cpus() if cpus is None else cpus
    return max(1, math.floor(cpus / local_ranks(environ)))


def busy_cpus(sample: float = SAMPLE_S, stat: Path = PROC_STAT) -> float:
    """The CPUs other work keeps busy now: the machine's non-idle share of its CPU time over
    `sample` seconds (this process sleeps meanwhile), in CPUs; 0 where /proc/stat cannot be read."""

    def totals() -> tuple[int, int]:
        fields = [int(v) for v in (_read(stat) or "").splitlines()[0].split()[1:9]]
        return sum(fields), fields[3] + fields[4]  # all time, idle + iowait

    try:
        total, idle = totals()
        time.sleep(sample)
        total2, idle2 = totals()
    except (IndexError, ValueError):
        return 0.0
    elapsed = total2 - total
    return 0.0 if elapsed <= 0 else max(0.0, 1 - (idle2 - idle) / elapsed) * (os.cpu_count() or 1)


def choose(threads: int | None = None, environ=os.environ, busy: float | None = None) -> Choice:
    """The thread count to use, and where it came from (see the module's docstring); `busy`:
    the CPUs other work keeps busy (default: sampled now, where the count is linpath's choice)."""
    if threads is not None:
        return Choice(positive_count(threads, "threads"), "threads")
    if environ.get(ENV, "").strip():
        return Choice(positive_count(environ[ENV], ENV), ENV)
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    if omp and not (omp == "1" and "LOCAL_WORLD_SIZE" in environ):
        return Choice(None, "OMP_NUM_THREADS")
    usable = usable_threads(environ)
    busy = busy_cpus() if busy is None else busy
    idle = max(1, round(((os.cpu_count() or 1) - busy) / local_ranks(environ)))
    return Choice(usable, "usable CPUs") if idle >= usable else Choice(idle, "idle CPUs")


def apply(threads: int | None = None, environ=os.environ, sample: bool = True) -> Choice:
    """Set torch's intra-op thread count from choose(threads). Before torch is imported, through
    the environment torch reads when it starts (OMP_NUM_THREADS), with OMP_WAIT_POLICY=PASSIVE
    where other work keeps the machine busy and the environment does not say how OpenMP threads
    wait; after, torch.set_num_threads.
    The command line's --threads calls this (the API's threads= keyword: using()); a command that
    does no tensor work passes sample=False: the machine is taken as idle, not sampled (0.2 s)."""
    global _applied
    busy = busy_cpus() if sample else 0.0
    choice = choose(threads, environ, busy)
    torch = sys.modules.get("torch")
    if torch is None:
        if busy >= BUSY_CPUS and not any(environ.get(v) for v in WAIT_VARIABLES):
            environ["OMP_WAIT_POLICY"] = "PASSIVE"
        if choice.count is not None:
            environ["OMP_NUM_THREADS"] = str(choice.count)
    elif choice.count is not None:
        torch.set_num_threads(choice.count)
    _applied = choice
    return choice


@contextlib.contextmanager
def using(threads: int | None):
    """The API's threads= keyword: torch's count is `threads` inside the block (a choice of the
    caller, so the small-model rule stands aside), restored after; None changes nothing."""
    global _applied
    if threads is None:
        yield
        return
    n = positive_count(threads, "threads")
    import torch

    before, saved = torch.get_num_threads(), _applied
    torch.set_num_threads(n)
    _applied = Choice(n, "threads")
    try:
        yield
    finally:
        torch.set_num_threads(before)
        _applied = saved


def chosen_explicitly(environ=os.environ) -> bool:
    """Whether the user chose the count: by apply(threads) or in the environment."""
    if _applied is not None:
        return _applied.explicit
    return choose(None, environ, busy=0.0).explicit


def is_small_model(model) -> bool:
    """A model whose products are too small to split across threads: no convolution and fewer
    than SMALL_MODEL_PARAMETERS parameters."""
    from torch import nn

    if any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        return False
    return sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS


@contextlib.contextmanager
def for_model(model, environ=os.environ):
    """One intra-op thread inside the block for a small model, unless the count was chosen
    explicitly; torch's count is restored after. Anything else: unchanged."""
    import torch

    before = torch.get_num_threads()
    limit = before > 1 and not chosen_explicitly(environ) and is_small_model(model)
    if limit:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if limit:
            torch.set_num_threads(before)
