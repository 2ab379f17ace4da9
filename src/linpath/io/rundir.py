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
  sweep/<key>/digests/r<r>-t<t>.sha256   that file's sha256 as it was written (a hand edit is found)
  results/<key>/paths.csv, metrics.csv, summary.csv, decisions.csv, figures/   (linpath report)
  results/compare/<a>--<b>.csv    linpath compare: setting a minus setting b per t, with intervals
  paths.csv, report.md, report.html   every setting's points; the report, and its interactive page
  tensorboard/                    only with --tensorboard: per-epoch training and per-setting path metrics
  layers/<key>-hold<H>/layers.csv, figures/      the per-layer mode's table and figures
  plane/<key>/plane.csv, plane.json, plane.rows/, plane.png, trajectory.csv   a plane (OutDir)
  trajectory/r<r>/trajectory.csv, trajectory.png   a replicate's trajectory (OutDir's names)
  spawn/r<r>-t<T>/                children trained from replicate r at T (SpawnDir: child-<k>/,
                                  parent.pt, spawn.json, <key>/path-c<a>-c<b>.csv, <key>/instability.csv)
  spawn/r<r>-t<T>-perturb<EPS>/   the same, children from a perturbed θ_T on the parent's data order
  spawn/instability.csv, .png     every spawn's rows and the instability figure
  spawn/instability_curve.csv, stability.csv   the curve against T with intervals; where it falls below 2 %
  merged.json                     only in a study made by `linpath merge`: its sources
  import.json                     only in a run made by `linpath import`: the files it came from
  grid.json                       only in a run imported from a checkpoint grid (runs/import_grid.py):
                                  the revisions it references, their commits and files' sha256
  replicate-<r>/revisions/step<t>/   a grid's model folder, where it was imported with copy
  sweep/<key>/data.json           an external run's setting: the --data it was evaluated on
  audit/cache.json                what `linpath audit` read of each kept file
  audit/grid.json                 what the grid audit read of each revision's tensors (by its files' sha256)
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from linpath.io.files import remove_stale_temporaries
from linpath.io.lock import folder_lock, holders

_ITEM_NAME = re.compile(r"^r(\d+)-t(\d+)\.csv$")


def numbered(folder: Path, prefix: str, suffix: str = "") -> list[tuple[int, Path]]:
    """(n, path) for every entry of `folder` named prefix + digits + suffix (replicate-3,
    iter-0000016.pt), sorted by n; entries with other names are left out."""
    name = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
    entries = folder.glob(f"{prefix}*{suffix}") if folder.is_dir() else []
    return sorted((int(m.group(1)), p) for p in entries if (m := name.fullmatch(p.name)))


class RunDir:
    """Paths inside one run folder; see the module docstring, the only written layout (the
    README links here). A test fails on a run-folder file name written anywhere else in src/."""

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
        """The sources of a study made by `linpath merge` (runs/merge.py); absent elsewhere."""
        return self.root / "merged.json"

    @property
    def import_record(self) -> Path:
        """The files a run made by `linpath import` came from (runs/import_dir.py)."""
        return self.root / "import.json"

    @property
    def audit_cache(self) -> Path:
        return self.root / "audit" / "cache.json"

    @property
    def grid_record(self) -> Path:
        """The revisions a run imported from a checkpoint grid references (io/grid_record.py)."""
        return self.root / "grid.json"

    @property
    def is_grid(self) -> bool:
        """Whether the run's states are a checkpoint grid's revisions, not replicate-<r>/checkpoints/."""
        return self.grid_record.exists()

    def revision_folder(self, r: int, t: int) -> Path:
        """Replicate r's model folder at step t, where a grid was imported with copy."""
        return self.replicate_dir(r) / "revisions" / f"step{t}"

    @property
    def grid_audit_cache(self) -> Path:
        """The grid audit's tensor digests and distances, keyed by the revisions' file hashes."""
        return self.root / "audit" / "grid.json"

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

    @staticmethod
    def item_digest(item: Path) -> Path:
        """Where the sha256 of the item file `item` is recorded when the sweep (or a merge) writes
        it, so that a later edit by hand is found (sweep.items.item_problem)."""
        item = Path(item)
        return item.parent / "digests" / f"{item.stem}.sha256"

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

    def setting_paths(self, setting: str) -> Path:
        """One setting's points (its rows of the run's paths.csv)."""
        return self.results_dir(setting) / "paths.csv"

    def metrics_csv(self, setting: str) -> Path:
        """One setting's path metrics per replicate, t and quantity."""
        return self.results_dir(setting) / "metrics.csv"

    def summary_csv(self, setting: str) -> Path:
        """One setting's metrics over replicates, with their intervals."""
        return self.results_dir(setting) / "summary.csv"

    def decisions_csv(self, setting: str) -> Path:
        """One setting's barrier decisions: onset, vanishing, equivalence, per t (analysis/decisions.py)."""
        return self.results_dir(setting) / "decisions.csv"

    def comparison_csv(self, a: str, b: str) -> Path:
        """Setting a minus setting b on the same states, per t (linpath compare)."""
        return self.root / "results" / "compare" / f"{a}--{b}.csv"

    def figures_dir(self, setting: str) -> Path:
        return self.results_dir(setting) / "figures"

    def reported_settings(self) -> list[str]:
        """The settings whose tables a report wrote (results/<setting>/metrics.csv), by name."""
        folder = self.root / "results"
        found = folder.glob("*") if folder.is_dir() else []
        return sorted(p.name for p in found if self.metrics_csv(p.name).is_file())

    def layers_dir(self, setting: str, hold: str) -> Path:
        """The per-layer mode's table and figures for a setting (apart from results/, whose
        folders are sweep settings)."""
        return self.root / "layers" / f"{setting}-hold{hold}"

    def layers_csv(self, setting: str, hold: str) -> Path:
        return self.layers_dir(setting, hold) / "layers.csv"

    def layers_figures(self, setting: str, hold: str) -> Path:
        return self.layers_dir(setting, hold) / "figures"

    def plane_dir(self, key: str) -> Path:
        return self.root / "plane" / key

    def plane_dirs(self) -> list[Path]:
        """The run's finished planes (folders holding plane.csv)."""
        folder = self.root / "plane"
        found = folder.glob("*") if folder.is_dir() else []
        return sorted(p for p in found if OutDir(p).plane_csv.is_file())

    def trajectory_dir(self, r: int) -> Path:
        return self.root / "trajectory" / f"r{r}"

    @property
    def spawn_root(self) -> Path:
        return self.root / "spawn"

    def spawn_dir(self, r: int, t: int, kind: str = "") -> Path:
        """The spawn of replicate r's children at step t; `kind` names children that differ by
        other than their data order (e.g. "perturb0.001"), each kind a folder of its own."""
        return self.spawn_root / (f"r{r}-t{t:07d}" + (f"-{kind}" if kind else ""))

    def spawn_dirs(self) -> list[Path]:
        """Every spawn's folder, by name."""
        return (
            sorted(p for p in self.spawn_root.glob("r*-t*") if p.is_dir()) if self.spawn_root.is_dir() else []
        )

    @property
    def instability_csv(self) -> Path:
        """Every spawn's rows of the run (error barrier against T), and its figure beside it."""
        return self.spawn_root / "instability.csv"

    @property
    def instability_png(self) -> Path:
        return self.spawn_root / "instability.png"

    @property
    def instability_curve_csv(self) -> Path:
        """The instability curve against T with its intervals (analysis/instability.py)."""
        return self.spawn_root / "instability_curve.csv"

    @property
    def stability_csv(self) -> Path:
        """Where the instability curve falls below 2 %, with its interval."""
        return self.spawn_root / "stability.csv"

    @property
    def tensorboard_dir(self) -> Path:
        """The run's TensorBoard event files (only once asked for with --tensorboard)."""
        return self.root / "tensorboard"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

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

    def running(self, stage: str) -> list[str]:
        """The pids of the processes holding a lock of `stage` on this folder now ("sweep": every
        rank's sweep-rank<k>); nothing is written."""
        return holders(self.root, stage)


class OutDir:
    """Paths inside a folder that `linpath path` or `linpath plane` writes (--out): the path's
    table, setting and metrics records and figures; a plane's table, figure and trajectory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def paths_csv(self) -> Path:
        return self.root / "paths.csv"

    @property
    def setting_json(self) -> Path:
        return self.root / "setting.json"

    @property
    def metrics_json(self) -> Path:
        return self.root / "metrics.json"

    @property
    def path_figures(self) -> list[Path]:
        return [self.root / "path.png", self.root / "path.pdf"]

    @property
    def plane_csv(self) -> Path:
        return self.root / "plane.csv"

    @property
    def plane_png(self) -> Path:
        return self.root / "plane.png"

    @property
    def trajectory_csv(self) -> Path:
        return self.root / "trajectory.csv"

    @property
    def trajectory_png(self) -> Path:
        return self.root / "trajectory.png"


class SpawnDir(RunDir):
    """A spawn's folder (RunDir.spawn_dir): the replicate layout of RunDir, with child-<k> for
    replicate-<k>, the parent's state, the spawn's record, and per sweep setting the children's
    pair paths and their instability rows."""

    def replicate_dir(self, k: int) -> Path:
        return self.root / f"child-{k}"

    @property
    def parent_file(self) -> Path:
        return self.root / "parent.pt"

    @property
    def info_file(self) -> Path:
        return self.root / "spawn.json"

    def pair_csv(self, setting: str, a: int, b: int, aligned: bool = False) -> Path:
        """Children a and b's path (after weight matching with `aligned`)."""
        return self.root / setting / f"path-c{a}-c{b}{'-aligned' if aligned else ''}.csv"

    def pair_png(self, setting: str, a: int, b: int, aligned: bool = False) -> Path:
        return self.pair_csv(setting, a, b, aligned).with_suffix(".png")

    def instability(self, setting: str) -> Path:
        return self.root / setting / "instability.csv"

    def instability_tables(self) -> list[Path]:
        """The instability rows of every setting evaluated in this spawn."""
        return sorted(self.root.glob("*/instability.csv"))
