"""grid.json: what a run imported from a checkpoint grid references (runs/import_grid.py).

A grid run holds no weights (unless imported with copy): its replicates' states are revisions
of a Hub repository or of a local folder of revisions (io/hub.py), and grid.json records, per
replicate and step, the revision's name, its commit (Hub), and each model file's size and
sha256 as they were at import. Everything after the import (the audit, the sweep) reads the
revisions through this record: the audit compares the recorded hashes before any weight is
downloaded, the sweep checks each folder's files against them before it reads a tensor.

    {"format": 1, "kind": "hub" | "mirror", "selection": "paper", "requested": [0, 1, ...],
     "copied": false,
     "replicates": {"0": {"source": "EleutherAI/pythia-70m", "missing": [],
                          "revisions": {"1000": {"name": "step1000", "commit": "<40 hex>",
                                                 "config": "<sha256 of the config>",
                                                 "files": {"model.safetensors": {"size": ..., "sha256": ...}}}}}},
     "configs": {"<sha256>": {...config.json, as published...}}}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.hub import WEIGHT_SUFFIX, FileInfo, HubSource, MirrorSource, verify_folder
from linpath.io.rundir import RunDir

FORMAT = 1
KINDS = ("hub", "mirror")
# config.json entries that say who wrote the file, not what the model is
UNCOMPARED_CONFIG_KEYS = ("transformers_version", "_name_or_path")


def config_digest(config: dict) -> str:
    """sha256 of a config's canonical JSON, without UNCOMPARED_CONFIG_KEYS."""
    kept = {k: v for k, v in config.items() if k not in UNCOMPARED_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Revision:
    """One state of the grid: a revision and its model files as imported."""

    name: str
    commit: str | None
    config: str  # config_digest of its config.json (GridRecord.configs holds the config)
    files: tuple[FileInfo, ...]

    @property
    def shards(self) -> list[FileInfo]:
        return [f for f in self.files if f.name.endswith(WEIGHT_SUFFIX)]

    @property
    def payload(self) -> str:
        """A digest of its weights: the sorted sha256 of its shards (file names aside)."""
        return hashlib.sha256("|".join(sorted(f.sha256 for f in self.shards)).encode()).hexdigest()

    def to_json(self) -> dict:
        files = {f.name: f.to_json() for f in self.files}
        return {"name": self.name, "commit": self.commit, "config": self.config, "files": files}

    @classmethod
    def from_json(cls, d: dict) -> Revision:
        files = tuple(
            FileInfo(name, int(f["size"]), str(f["sha256"]), f.get("mtime_ns"))
            for name, f in d["files"].items()
        )
        return cls(str(d["name"]), d.get("commit"), str(d["config"]), files)


@dataclass(frozen=True)
class ReplicateGrid:
    """One replicate's grid: its source (repo or folder), revisions by step, missing steps."""

    source: str
    revisions: dict[int, Revision]
    missing: tuple[int, ...] = ()

    def to_json(self) -> dict:
        revisions = {str(t): rev.to_json() for t, rev in sorted(self.revisions.items())}
        return {"source": self.source, "missing": list(self.missing), "revisions": revisions}

    @classmethod
    def from_json(cls, d: dict) -> ReplicateGrid:
        revisions = {int(t): Revision.from_json(rev) for t, rev in d["revisions"].items()}
        return cls(
            str(d["source"]), dict(sorted(revisions.items())), tuple(int(t) for t in d.get("missing", ()))
        )


@dataclass(frozen=True)
class GridRecord:
    """grid.json (see the module's docstring)."""

    kind: str
    selection: str
    requested: tuple[int, ...]
    replicates: dict[int, ReplicateGrid]
    configs: dict[str, dict] = field(default_factory=dict)
    copied: bool = False

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "selection": self.selection,
            "requested": list(self.requested),
            "copied": self.copied,
            "replicates": {str(r): g.to_json() for r, g in sorted(self.replicates.items())},
            "configs": self.configs,
        }

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> GridRecord:
        """The record at `path`, checked: one line for anything unreadable or inconsistent."""
        try:
            d = json.loads(Path(path).read_text())
            record = cls(
                kind=d["kind"],
                selection=str(d["selection"]),
                requested=tuple(int(t) for t in d["requested"]),
                replicates={int(r): ReplicateGrid.from_json(g) for r, g in d["replicates"].items()},
                configs=dict(d["configs"]),
                copied=bool(d.get("copied", False)),
            )
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}, not {FORMAT}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise LinpathError(f"unreadable grid record {path}: {type(e).__name__}: {e}") from None
        return record.checked(path)

    def checked(self, where) -> GridRecord:
        if self.kind not in KINDS:
            raise LinpathError(f"{where}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        for r, grid in self.replicates.items():
            for t, rev in grid.revisions.items():
                if rev.config not in self.configs:
                    raise LinpathError(
                        f"{where}: replicate {r}, step {t}: its config {rev.config[:12]} is not recorded"
                    )
                if not rev.shards:
                    raise LinpathError(f"{where}: replicate {r}, step {t} ({rev.name}) records no weights")
        return self

    def final_step(self, r: int) -> int:
        return max(self.replicates[r].revisions)

    def steps(self, r: int) -> list[int]:
        return sorted(self.replicates[r].revisions)


def source_of(record: GridRecord, r: int, cache_dir=None, token=None):
    """The source replicate r's revisions come from (io/hub.py)."""
    source = record.replicates[r].source
    return HubSource(source, cache_dir, token) if record.kind == "hub" else MirrorSource(source)


def state_folder(
    run: RunDir, record: GridRecord, r: int, t: int, fetch: bool = True, cache_dir=None, token=None
) -> Path | None:
    """Replicate r's model folder at step t, its files checked against the record: the run's
    copy, the mirror's folder, or the Hub's snapshot (downloaded when `fetch`, else None where
    the cache does not hold it)."""
    rev = record.replicates[r].revisions[t]
    if record.copied:
        folder = run.revision_folder(r, t)
    else:
        source = source_of(record, r, cache_dir, token)
        folder = source.folder(rev.name, rev.commit) if fetch else source.cached_folder(rev.name, rev.commit)
    incomplete = (
        record.kind == "hub" and folder is not None and any(not (folder / f.name).exists() for f in rev.files)
    )
    if folder is None or (incomplete and not fetch):
        return None  # not downloaded yet (an import fetches config.json and the index only)
    verify_folder(folder, list(rev.files), f"replicate {r}'s revision {rev.name}")
    return folder
