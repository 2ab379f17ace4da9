"""The schedule of one spec on one data set: its length, learning rates and kept steps, in iterations."""

from __future__ import annotations

from dataclasses import dataclass

from linpath.config.spec import Spec
from linpath.config.steps import MAX_ITERATIONS, Step, kept_steps, parse_step_list
from linpath.data.source import iterations_per_epoch
from linpath.errors import LinpathError


@dataclass(frozen=True)
class Schedule:
    """Steps and learning rates of one spec on one data set, in iterations."""

    iterations_per_epoch: int
    total: int
    lr: float
    milestones: tuple[int, ...]
    gamma: float
    warmup: int
    keep: tuple[int, ...] = ()  # --keep-steps, in iterations

    @classmethod
    def of(cls, spec: Spec, num_train_examples: int) -> Schedule:
        ipe = iterations_per_epoch(num_train_examples, spec.data.batch_size)
        t = spec.train
        total = Step.parse(t.training_steps).to_iterations(ipe)
        if total <= 0:
            raise LinpathError(f"--training-steps {t.training_steps} is zero iterations")
        if total > MAX_ITERATIONS:
            raise LinpathError(
                f"--training-steps {t.training_steps} is {total} iterations, more than linpath's limit of "
                f"{MAX_ITERATIONS} (a checkpoint is kept every 1000 iterations, each a file on disk)"
            )
        warmup = Step.parse(t.warmup_steps).to_iterations(ipe) if t.warmup_steps else 0
        milestones = tuple(s.to_iterations(ipe) for s in parse_step_list(t.milestone_steps))
        keep = tuple(sorted({s.to_iterations(ipe) for s in parse_step_list(t.keep_steps)}))
        if keep and keep[-1] > total:
            raise LinpathError(
                f"--keep-steps {t.keep_steps}: step {keep[-1]} is past the end of training ({total} iterations)"
            )
        return cls(ipe, total, t.lr, milestones, t.gamma, warmup, keep)

    def lr_at(self, step: int) -> float:
        """Learning rate of the update from `step` to `step + 1` (OpenLTH's convention:
        warm-up factor step/warmup, times gamma for each milestone <= step)."""
        factor = min(1.0, step / self.warmup) if self.warmup else 1.0
        return self.lr * factor * self.gamma ** sum(m <= step for m in self.milestones)

    def batch_at(self, step: int, batch_size: int, num_examples: int) -> int:
        """Size of the global batch of `step` (the last batch of an epoch may be short)."""
        return min(batch_size, num_examples - (step % self.iterations_per_epoch) * batch_size)

    def kept(self) -> list[int]:
        """The paper's kept steps, and the user's (--keep-steps)."""
        return sorted(set(kept_steps(self.total)) | set(self.keep))
