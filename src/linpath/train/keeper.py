"""linpath.Keeper: the paper's states kept from the researcher's own training loop.

    keeper = linpath.Keeper("runs/my-mlp", model, total_steps=3000, hparams={"lr": 0.1})
    for step in range(1, 3001):
        ...                         # forward, backward, optimizer.step()
        keeper.step(step)           # after each optimizer step: a set lookup unless step is kept
    keeper.finish()                 # the final state and the DONE mark

The model's state at construction is step `start_step` (0: the initialization) and is kept at
once. Kept states are copied to the CPU only at kept steps and written atomically as
replicate-<r>/checkpoints/iter-<t>.pt, so the folder is a linpath run folder (spec.json marked
external, see config/external.py) that `linpath sweep`, `report`, `plane`, `trajectory`,
`audit` and linpath.load read like a preset's. Another spec, a finished replicate or a foreign
folder is refused in one line. Under DDP only rank 0 writes.

Resumable, and a kept state is never overwritten by another: a Keeper on a replicate that
already kept states takes start_step= as the step the model's weights are from, and checks it
(the model must be the state kept there, or continue the last state kept before it: see
train/lineage.py); without start_step it finds the kept state the model is (as after
restore_state) or refuses in one line. A resumed training that passes a kept step again with
the same weights leaves the file as it is; with other weights (a nondeterministic rerun) it
keeps its own and moves the earlier one to replicate-<r>/superseded/, with a warning.

With `optimizer=` (and `rng=True`) each kept step also gets replicate-<r>/training-state/
iter-<t>.pt, holding the optimizer's state and the random generators' states, so that children
can be spawned from step t in the researcher's own loop (restore_state).
"""

from __future__ import annotations

import bisect
import contextlib
import os
import random
import warnings
from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from linpath.config.external import ExternalSpec, differences, json_value
from linpath.config.spec import read_spec, write_spec
from linpath.config.steps import Step, kept_steps, parse_step_list
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tensors import load_state_dict, load_tensors, save_tensors
from linpath.train.lineage import weight_correlation
from linpath.train.replicate import cpu_state


def resolve_grid(keep, total: int, steps_per_epoch: int | None = None) -> tuple[int, ...]:
    """The kept steps: keep="paper" is the paper's grid (config.steps.kept_steps); a
    --keep-steps string ("100,2ep,3ep50it") the paper's grid and those steps; a list of steps
    exactly those, with 0 and `total`. Epochs need `steps_per_epoch`."""

    def iterations(step: Step) -> int:
        if step.epochs and not steps_per_epoch:
            raise LinpathError(f"keep step {step} counts epochs: give steps_per_epoch")
        return step.to_iterations(steps_per_epoch or 0)

    if isinstance(keep, str):
        parts = [p for p in keep.split(",") if p.strip() and p.strip() != "paper"]
        grid = set(kept_steps(total)) | {iterations(s) for s in parse_step_list(",".join(parts))}
    elif isinstance(keep, Iterable):
        grid = {0, total} | {iterations(Step.parse(s)) for s in keep}
    else:
        raise LinpathError(f"keep must be 'paper', a --keep-steps string or a list of steps, got {keep!r}")
    beyond = sorted(t for t in grid if t > total)
    if beyond:
        raise LinpathError(f"keep step {beyond[0]} is past the end of training (total_steps {total})")
    return tuple(sorted(grid))


def unwrap(model: nn.Module) -> nn.Module:
    """The module whose state dict is the model's own keys: without DDP's `module.` and
    torch.compile's `_orig_mod.` wrappers."""
    if not isinstance(model, nn.Module):
        raise LinpathError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
    for _ in range(3):
        inner = getattr(model, "_orig_mod", None) or (
            model.module if isinstance(model, nn.parallel.DistributedDataParallel) else None
        )
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def class_name(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def is_rank_zero() -> bool:
    """Rank 0 of a torch.distributed group (or of torchrun before the group exists), or no group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


class Keeper:
    """Keeps a model's states at the paper's steps (or yours) from your own training loop;
    see the module docstring. `hparams` (a dict, e.g. your optimizer's settings) enter spec.json
    and its hash; `replicate` numbers this training among several of the same spec."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        model: nn.Module,
        total_steps: int,
        keep="paper",
        *,
        replicate: int = 0,
        hparams: dict | None = None,
        steps_per_epoch: int | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        rng: bool = False,
        start_step: int | None = None,
        kept_by: str = "keeper",
    ):
        self.model = unwrap(model)
        if isinstance(replicate, bool) or not isinstance(replicate, int) or replicate < 0:
            raise LinpathError(f"replicate must be a whole number >= 0, got {replicate!r}")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
            raise LinpathError(f"total_steps must be a positive whole number, got {total_steps!r}")
        if start_step is not None and (
            isinstance(start_step, bool)
            or not isinstance(start_step, int)
            or not 0 <= start_step <= total_steps
        ):
            raise LinpathError(
                f"start_step must be a step in 0..{total_steps} (total_steps), got {start_step!r}"
            )
        grid = resolve_grid(keep, total_steps, steps_per_epoch)
        self.spec = ExternalSpec(
            class_name(self.model), json_value(hparams or {}), total_steps, grid, replicate + 1, kept_by
        ).validate()
        self.run, self.replicate = RunDir(run_dir), replicate
        self.optimizer, self.rng = optimizer, rng
        self._kept = frozenset(grid)
        self._written: set[int] = set()
        self._last: int | None = None
        self._warned = False
        self._stack = contextlib.ExitStack()
        self.active = is_rank_zero()
        try:
            if self.active:
                self._open()
            self.start_step = resume_step(self.run, replicate, self.model, start_step)
            self.step(self.start_step)
        except BaseException:
            self.close()
            raise

    @property
    def total_steps(self) -> int:
        return self.spec.total_steps

    @property
    def grid(self) -> tuple[int, ...]:
        return self.spec.kept_steps

    def _open(self) -> None:
        """Create the run folder, or continue the one of the same spec; hold its lock."""
        run, r = self.run, self.replicate
        if run.spec_path.exists():
            existing = read_spec(run, external_ok=True)
            if not isinstance(existing, ExternalSpec):
                raise LinpathError(
                    f"{run.root} holds a linpath run of preset {existing.preset}; keep your states in another folder"
                )
            if existing.hash != self.spec.hash:
                raise LinpathError(
                    f"{run.root} holds states of another training ({differences(existing, self.spec)}); "
                    "keep these in another folder"
                )
            self.spec = replace(self.spec, replicates=max(existing.replicates, self.spec.replicates))
        elif run.root.is_dir() and any(run.root.iterdir()):
            raise LinpathError(
                f"{run.root} is not empty and not a linpath run folder (no spec.json); keep your states in a new folder"
            )
        self._stack.enter_context(run.lock(f"keep-replicate-{r}"))
        if run.done_marker(r).exists():
            self._stack.close()
            raise LinpathError(
                f"replicate {r} of {run.root} is finished (DONE); keep this training as another replicate "
                f"(replicate={r + 1}) or in another folder"
            )
        write_spec(run, self.spec)
        run.remove_stale_temporaries(run.replicate_dir(r))

    def step(self, step: int | None = None) -> None:
        """Call after each optimizer step with the number of updates so far (None: one more
        than the last call's); writes the state when `step` is kept."""
        t = (0 if self._last is None else self._last + 1) if step is None else step
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= self.spec.total_steps:
            raise LinpathError(f"step {t!r} is outside 0..{self.spec.total_steps} (total_steps)")
        if self._last is not None and t > self._last + 1:
            self._check_jump(self._last, t)
        self._last = t
        if t in self._kept and t not in self._written and self.active:
            self._save(t)

    def _check_jump(self, last: int, t: int) -> None:
        grid = self.spec.kept_steps
        skipped = grid[bisect.bisect_right(grid, last) : bisect.bisect_left(grid, t)]
        if skipped and not self._warned:
            self._warned = True
            warnings.warn(
                f"linpath.Keeper: the steps went from {last} to {t}, past the kept steps "
                f"{', '.join(map(str, skipped[:5]))}: call keeper.step after every optimizer step",
                stacklevel=3,
            )

    def _save(self, t: int) -> None:
        state = cpu_state(self.model)
        path = self.run.checkpoint(self.replicate, t)
        if path.is_file() and same_state(state, path):
            self._written.add(t)  # a resumed training passed t again with the same weights: kept as it was
            return
        if path.is_file():
            self._supersede(t)
        save_tensors(path, state)
        if self.optimizer is not None or self.rng:
            state = {"step": t, "rng": rng_state() if self.rng else None}
            if self.optimizer is not None:
                state["optimizer"] = _to_cpu(self.optimizer.state_dict())
            save_tensors(self.run.training_state(self.replicate, t), state)
        self._written.add(t)

    def _supersede(self, t: int) -> None:
        """Move the state kept at t by an earlier, abandoned continuation (and its training
        state) to replicate-<r>/superseded/, so that no kept state is ever overwritten."""
        run, r = self.run, self.replicate
        kept = run.superseded_file(r, t)
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.replace(run.checkpoint(r, t), kept)
        if run.training_state(r, t).is_file():
            os.replace(
                run.training_state(r, t), kept.with_name(kept.name.replace("iter-", "training-state-"))
            )
        warnings.warn(
            f"linpath.Keeper: the resumed training (from step {self.start_step}) reached step {t} with other "
            f"weights than the state kept there before, which is moved to {kept}",
            stacklevel=4,
        )

    def finish(self, step: int | None = None) -> RunDir:
        """The end of training: the final state kept (if step() has not), DONE written, the
        folder's lock released. Refused in one line when training stopped before total_steps."""
        if step is not None:
            self.step(step)
        if self._last != self.spec.total_steps:
            self.close()
            raise LinpathError(
                f"training ended at step {self._last}, not at total_steps {self.spec.total_steps}: the run "
                f"in {self.run.root} has no final state (its kept states stay; a Keeper with "
                f"total_steps={self._last} needs another folder)"
            )
        if self.active:
            lost = [t for t in self.spec.kept_steps if not self.run.checkpoint(self.replicate, t).is_file()]
            if lost:
                warnings.warn(
                    f"linpath.Keeper: no state was kept at steps {', '.join(map(str, lost[:8]))} "
                    f"of replicate {self.replicate} (step() was not called there)",
                    stacklevel=2,
                )
            atomic_write_text(self.run.done_marker(self.replicate), f"{self.spec.total_steps}\n")
        self.close()
        return self.run

    def close(self) -> None:
        """Release the folder's lock without marking the replicate finished."""
        self._stack.close()

    def __enter__(self) -> Keeper:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def same_state(state: dict[str, torch.Tensor], path) -> bool:
    """Whether the kept file at `path` holds exactly `state` (keys, dtypes and values)."""
    try:
        kept = load_state_dict(path)
    except LinpathError:
        return False
    return kept.keys() == state.keys() and all(
        kept[k].dtype == v.dtype and kept[k].shape == v.shape and torch.equal(kept[k], v)
        for k, v in state.items()
    )


def resume_step(run: RunDir, r: int, model: nn.Module, start_step: int | None) -> int:
    """The step the model's state is: `start_step`, checked against what replicate r already
    kept, or (None) inferred from it. A kept state is never overwritten by another: a model that
    is not the state kept at start_step, or not a continuation of the last state kept before it
    (train/lineage.py), or (no start_step) none of the kept states, is refused in one line."""
    saved = run.saved_steps(r)
    again = (
        f"restore_state(run_dir, {saved[-1] if saved else 0}, model, optimizer) resumes from the last kept state; "
        f"a new training is kept as replicate={r + 1} or in another folder"
    )
    if start_step is None:
        state = cpu_state(model)
        match = next((t for t in reversed(saved) if same_state(state, run.checkpoint(r, t))), None)
        if saved and match is None:
            raise LinpathError(
                f"replicate {r} of {run.root} already holds kept states (steps {_steps(saved)}) and the model "
                f"is none of them: say where this training resumes, start_step=<the step of its weights>; {again}"
            )
        return match or 0
    if start_step in saved:
        if not same_state(cpu_state(model), run.checkpoint(r, start_step)):
            raise LinpathError(
                f"the model is not the state kept at step {start_step} in {run.checkpoint(r, start_step)}: "
                f"resuming from another state would mix two trainings in replicate {r}; {again}"
            )
        return start_step
    before = [t for t in saved if t < start_step]
    if before:
        check_continues(run, r, model, before[-1], start_step, again)
    return start_step


def check_continues(run: RunDir, r: int, model: nn.Module, before: int, start_step: int, again: str) -> None:
    """Refuse a resume at start_step whose model's weights do not correlate with the last state
    kept before it (a fresh or another training's model; see train/lineage.py)."""
    c = weight_correlation(cpu_state(model), load_state_dict(run.checkpoint(r, before)))
    if c is not None and c.independent:
        raise LinpathError(
            f"the model resumed at step {start_step} does not continue the training kept in replicate {r} of "
            f"{run.root}: its weights correlate {c.value:.2f} with the state kept at step {before}, as "
            f"independent trainings' do (0 ± {c.noise:.2f}): a fresh model? {again}"
        )


def _steps(steps: list[int]) -> str:
    return ", ".join(map(str, steps[:8])) + (f" ... {steps[-1]}" if len(steps) > 8 else "")


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def rng_state() -> dict:
    """torch's, CUDA's, numpy's and Python's generator states as tensors and numbers (so they
    load weights-only)."""
    algo, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "algo": algo,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["algo"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"]), p["gauss"]))


def restore_state(
    run_dir: str | os.PathLike,
    t: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    replicate: int = 0,
) -> int:
    """Load the kept state at step t into `model` (and the optimizer's and the random
    generators' states, when the Keeper kept them), to spawn children from t in your own loop.
    Returns t."""
    run = RunDir(run_dir)
    unwrap(model).load_state_dict(load_state_dict(run.checkpoint(replicate, t)))
    file = run.training_state(replicate, t)
    if optimizer is not None or file.is_file():
        if not file.is_file():
            raise LinpathError(
                f"no optimizer state was kept at step {t} ({file}): pass optimizer= to the Keeper"
            )
        saved = load_tensors(file)
        if optimizer is not None:
            if "optimizer" not in saved:
                raise LinpathError(f"{file} holds no optimizer state (the Keeper had no optimizer)")
            optimizer.load_state_dict(saved["optimizer"])
        if saved.get("rng") is not None:
            set_rng_state(saved["rng"])
    return t
