"""RunDir: where every file of a run folder lives.

runs/<preset>-<hash>/
  spec.json                       the resolved spec (hash verified on every open)
  replicate-<r>/checkpoints/iter-<t>.pt   model state after t updates (kept steps)
  replicate-<r>/resume.pt         model + optimizer + step, for resuming training
  replicate-<r>/train_log.csv     per-epoch log
  replicate-<r>/provenance.json   where the replicate was trained (device, versions, date)
  sweep/<key>/r<r>-t<t>.csv       one finished path (replicate, t) of one sweep setting
  paths.csv                       every evaluated point (merged from sweep/)
  metrics.csv, figures/, report.md
  merged.json                     only in a study made by `linpath merge`: its sources
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from linpath.io.files import remove_stale_temporaries
from linpath.io.lock import folder_lock


class RunDir:
    """Paths inside one run folder; see the module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.json"

    def replicate_dir(self, r: int) -> Path:
        return self.root / f"replicate-{r}"

    def checkpoint_dir(self, r: int) -> Path:
        return self.replicate_dir(r) / "checkpoints"

    def checkpoint(self, r: int, t: int) -> Path:
        return self.checkpoint_dir(r) / f"iter-{t:07d}.pt"

    def resume_file(self, r: int) -> Path:
        return self.replicate_dir(r) / "resume.pt"

    def train_log(self, r: int) -> Path:
        return self.replicate_dir(r) / "train_log.csv"

    def done_marker(self, r: int) -> Path:
        return self.replicate_dir(r) / "DONE"

    def provenance(self, r: int) -> Path:
        """Where replicate r was trained (runtime/provenance.py writes it when it finishes)."""
        return self.replicate_dir(r) / "provenance.json"

    @property
    def merged_record(self) -> Path:
        """The sources of a study made by `linpath merge` (commands/merge.py); absent elsewhere."""
        return self.root / "merged.json"

    @property
    def sweep_dir(self) -> Path:
        return self.root / "sweep"

    @property
    def paths_csv(self) -> Path:
        return self.root / "paths.csv"

    def results_dir(self, setting: str) -> Path:
        """One sweep setting's own table, metrics and figures."""
        return self.root / "results" / setting

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    def saved_steps(self, r: int) -> list[int]:
        """Steps with a checkpoint on disk for replicate r, ascending."""
        folder = self.checkpoint_dir(r)
        if not folder.is_dir():
            return []
        steps = []
        for p in folder.glob("iter-*.pt"):
            with contextlib.suppress(ValueError):
                steps.append(int(p.stem.split("-", 1)[1]))
        return sorted(steps)

    def replicates(self) -> list[int]:
        """Replicates whose training finished."""
        out = []
        for p in self.root.glob("replicate-*"):
            with contextlib.suppress(ValueError):
                r = int(p.name.split("-", 1)[1])
                if self.done_marker(r).exists():
                    out.append(r)
        return sorted(out)

    def remove_stale_temporaries(self, folder: Path) -> int:
        return remove_stale_temporaries(folder)

    def lock(self, name: str = "run") -> contextlib.AbstractContextManager[None]:
        """Hold an exclusive lock on this folder; a second process gets a clear refusal."""
        return folder_lock(self.root, name)
