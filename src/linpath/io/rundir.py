"""RunDir: where every file of a run folder lives. No other module builds a path inside one.

runs/<preset>-<hash>/
  spec.json                       the resolved spec (hash verified on every open)
  openlth.json                    only in a run imported from OpenLTH (its steps are OpenLTH's)
  replicate-<r>/checkpoints/iter-<t>.pt   model state after t updates (kept steps)
  replicate-<r>/resume.pt         model + optimizer + step, for resuming training
  replicate-<r>/train_log.csv     per-epoch log
  replicate-<r>/DONE              the replicate's last step, written when it finished
  replicate-<r>/provenance.json   where the replicate was trained (device, versions, date)
  replicate-<r>/training-state/iter-<t>.pt   optimizer and generator states a Keeper kept (optional)
  replicate-<r>/superseded/iter-<t>.<n>.pt   a state a resumed Keeper training replaced (kept, never read)
  sweep/<key>/r<r>-t<t>.csv       one finished path (replicate, t) of one sweep setting
  results/<key>/                  that setting's tables and figures
  paths.csv, report.md            every setting's points; the report
  layers/<key>-hold<end|start>/   the per-layer mode's table and figures
  plane/<key>/, trajectory/r<r>/, spawn/r<r>-t<T>/   planes, trajectories, spawns
  merged.json                     only in a study made by `linpath merge`: its sources
  import.json                     only in a run made by `linpath import`: the files it came from
  sweep/<key>/data.json           an external run's setting: the --data it was evaluated on
  audit/cache.json                what `linpath audit` read of each kept file
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from linpath.io.files import remove_stale_temporaries
from linpath.io.lock import folder_lock

_ITEM_NAME = re.compile(r"^r(\d+)-t(\d+)\.csv$")


def numbered(folder: Path, prefix: str, suffix: str = "") -> list[tuple[int, Path]]:
    """(n, path) for every entry of `folder` named prefix + digits + suffix (replicate-3,
    iter-0000016.pt), sorted by n; entries with other names are left out."""
    name = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
    entries = folder.glob(f"{prefix}*{suffix}") if folder.is_dir() else []
    return sorted((int(m.group(1)), p) for p in entries if (m := name.fullmatch(p.name)))


class RunDir:
    """Paths inside one run folder; see the module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.json"

    @property
    def openlth_info(self) -> Path:
        return self.root / "openlth.json"

    @property
    def is_imported(self) -> bool:
        """Whether the run was imported from OpenLTH: its kept steps are OpenLTH's, not the schedule's."""
        return self.openlth_info.exists()

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

    def train_logs(self) -> list[tuple[int, Path]]:
        """(r, train_log.csv) of every replicate folder holding a log, by r."""
        return [
            (r, self.train_log(r))
            for r, _ in numbered(self.root, "replicate-")
            if self.train_log(r).is_file()
        ]

    def done_marker(self, r: int) -> Path:
        return self.replicate_dir(r) / "DONE"

    def done_step(self, r: int) -> int | None:
        """The step replicate r finished at, as its DONE mark records it (None: no readable mark)."""
        try:
            return int(self.done_marker(r).read_text().strip())
        except (OSError, ValueError):
            return None

    def training_state(self, r: int, t: int) -> Path:
        """The optimizer's and generators' states a Keeper kept beside the checkpoint at t."""
        return self.replicate_dir(r) / "training-state" / f"iter-{t:07d}.pt"

    def superseded_file(self, r: int, t: int) -> Path:
        """A free name for a state a Keeper kept at t and a resumed training replaced (never
        read by linpath; kept so that nothing kept is lost): superseded/iter-<t>.<n>.pt."""
        folder = self.replicate_dir(r) / "superseded"
        n = 1
        while (folder / f"iter-{t:07d}.{n}.pt").exists():
            n += 1
        return folder / f"iter-{t:07d}.{n}.pt"

    def started_replicates(self) -> list[int]:
        """Every replicate with a folder, finished or not."""
        return [r for r, _ in numbered(self.root, "replicate-")]

    def provenance(self, r: int) -> Path:
        """Where replicate r was trained (runtime/provenance.py writes it when it finishes)."""
        return self.replicate_dir(r) / "provenance.json"

    @property
    def merged_record(self) -> Path:
        """The sources of a study made by `linpath merge` (commands/merge.py); absent elsewhere."""
        return self.root / "merged.json"

    @property
    def import_record(self) -> Path:
        """The files a run made by `linpath import` came from (commands/import_dir.py)."""
        return self.root / "import.json"

    @property
    def audit_cache(self) -> Path:
        return self.root / "audit" / "cache.json"

    @property
    def is_merged(self) -> bool:
        """Whether the folder is a study made by `linpath merge`: it holds no checkpoints, by design."""
        return self.merged_record.exists()

    @property
    def sweep_dir(self) -> Path:
        return self.root / "sweep"

    def setting_dir(self, setting: str) -> Path:
        """One sweep setting's item files (named by its key)."""
        return self.sweep_dir / setting

    def item_file(self, setting: str, r: int, t: int) -> Path:
        """The file of one finished path (replicate r, start t) of a sweep setting."""
        return self.setting_dir(setting) / f"r{r}-t{t:07d}.csv"

    @staticmethod
    def item_of(path: Path) -> tuple[int, int] | None:
        """(r, t) that an item file's name stands for; None for any other name."""
        m = _ITEM_NAME.match(Path(path).name)
        return (int(m.group(1)), int(m.group(2))) if m else None

    def item_files(self, setting: str) -> list[Path]:
        """The files under a sweep setting named like items (r*-t*.csv), sorted by name: a
        misnamed one among them is for the readers' check (sweep.items.item_problem) to name."""
        folder = self.setting_dir(setting)
        return sorted(folder.glob("r*-t*.csv")) if folder.is_dir() else []

    def setting_data(self, setting: str) -> Path:
        """The record of the --data an external run's setting was evaluated on."""
        return self.setting_dir(setting) / "data.json"

    def swept_settings(self) -> list[str]:
        """The sweep settings holding at least one item file, by name."""
        folders = self.sweep_dir.iterdir() if self.sweep_dir.is_dir() else []
        return sorted(p.name for p in folders if p.is_dir() and self.item_files(p.name))

    @property
    def paths_csv(self) -> Path:
        return self.root / "paths.csv"

    def results_dir(self, setting: str) -> Path:
        """One sweep setting's own table, metrics and figures."""
        return self.root / "results" / setting

    def results_settings(self, name: str) -> list[Path]:
        """results/<setting>/ of every setting whose folder holds the table `name`."""
        folder = self.root / "results"
        return sorted(p for p in folder.glob("*") if (p / name).is_file()) if folder.is_dir() else []

    def layers_dir(self, setting: str, hold: str) -> Path:
        """The per-layer mode's table and figures for a setting (apart from results/, whose
        folders are sweep settings)."""
        return self.root / "layers" / f"{setting}-hold{hold}"

    def plane_dir(self, key: str) -> Path:
        return self.root / "plane" / key

    def plane_dirs(self) -> list[Path]:
        """The run's finished planes (folders holding plane.csv)."""
        return sorted(p.parent for p in (self.root / "plane").glob("*/plane.csv"))

    def trajectory_dir(self, r: int) -> Path:
        return self.root / "trajectory" / f"r{r}"

    @property
    def spawn_root(self) -> Path:
        return self.root / "spawn"

    def spawn_dir(self, r: int, t: int) -> Path:
        """The spawn of replicate r's children at step t."""
        return self.spawn_root / f"r{r}-t{t:07d}"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    def saved_steps(self, r: int) -> list[int]:
        """Steps with a checkpoint on disk for replicate r, ascending."""
        return [t for t, _ in numbered(self.checkpoint_dir(r), "iter-", ".pt")]

    def replicates(self) -> list[int]:
        """Replicates whose training finished."""
        return [r for r, _ in numbered(self.root, "replicate-") if self.done_marker(r).exists()]

    def remove_stale_temporaries(self, folder: Path) -> int:
        return remove_stale_temporaries(folder)

    def lock(self, name: str = "run") -> contextlib.AbstractContextManager[None]:
        """Hold an exclusive lock on this folder; a second process gets a clear refusal."""
        return folder_lock(self.root, name)
