"""`linpath merge STUDY RUN...`: one study from run folders of one spec whose replicates were
trained apart (one per GPU lease, one per cluster job), each swept where it was made.

STUDY receives spec.json, each finished replicate's DONE mark, train_log.csv and provenance.json,
and every sweep item file (each checked with sweep.items.item_problem first), but no checkpoint
and no resume file: `linpath report STUDY` reads only those. The tables are then rebuilt from the
items (sweep.tables.rebuild_tables) in the fixed order that makes them byte for byte those of one
run that trained and swept the same replicates itself.

Refused, in one line naming the folders, before anything is written: a source that is not a run
folder (no spec.json) or is STUDY itself; runs of different spec hashes; a replicate held by two
runs with different numbers (its DONE step, its training log apart from the seconds column, an
item file of the same t; identical copies, e.g. the same run given twice, are fine, and the first
is kept); a sweep setting held by some runs only (`settings` then names those to merge); a
damaged item file, or one of a replicate that has not finished.

STUDY: a new (or empty) folder is created. One made by an earlier merge of the same hash (it has
merged.json) takes more replicates and settings: it counts as one of the runs, none of its files
is replaced, and merged.json records every source. Any other existing folder is refused and left
as it was: nothing a user made is overwritten.

The study's spec.json names the versions of the merge; each source's own (those its replicates
were trained with, when they have no provenance.json) are kept in merged.json.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from linpath.analysis.curves import settings_of
from linpath.config.spec import Spec, read_spec, write_spec
from linpath.errors import LinpathError
from linpath.io.files import atomic_write, atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tables import read_csv_rows
from linpath.runtime.provenance import spec_versions
from linpath.sweep.items import item_problem
from linpath.sweep.tables import rebuild_tables

_HASH_SUFFIX = re.compile(r"-([0-9a-f]{10})$")


@dataclass
class Source:
    """A run folder to merge (or the study being extended), as found on disk."""

    name: str  # as the user wrote it, for messages
    run: RunDir
    spec: Spec | None
    versions: dict | None  # spec.json's "versions" block
    replicates: list[int]  # finished: they have a DONE mark
    unfinished: list[int]
    items: dict[str, dict[tuple[int, int], Path]] = field(default_factory=dict)  # setting -> (r, t) -> file

    def holds(self, setting: str) -> list[int]:
        return sorted({r for r, _ in self.items.get(setting, {})})


@dataclass
class Merged:
    """What a merge left: the study, all its replicates, those this merge added, its settings."""

    study: RunDir
    replicates: list[int]
    added: list[int]
    settings: list[str]
    notes: list[str]


def merge_runs(study: str | Path, sources: list[str | Path], settings: list[str] | None = None) -> Merged:
    """Merge the run folders `sources` into the study folder `study`, only the sweep settings
    `settings` if given (else every one, which every run must then hold)."""
    target = RunDir(study)
    runs = _open_sources(target, sources)
    spec = _common_spec(runs)
    existing = _existing_study(target, spec.hash)
    holders = ([existing] if existing and (existing.replicates or existing.items) else []) + runs
    keys = _settings_to_merge(holders, settings)
    _check_agreement(holders, keys)
    replicates = sorted({r for s in holders for r in s.replicates})
    counts = [replicates[-1] + 1] + [s.spec.replicates for s in holders if s.spec is not None]
    spec = replace(spec, replicates=max(counts))
    with target.lock("merge"):
        now = _existing_study(target, spec.hash)
        if _holding(now) != _holding(existing):  # another merge got there first
            raise LinpathError(f"{target.root} changed while this merge was checking it; run the merge again")
        _write_record(target, spec, runs, keys)
        if existing is None or existing.spec is None or existing.spec.replicates < spec.replicates:
            write_spec(target, spec)
        _copy_files(target, holders, keys)
        rebuild_tables(target)
    before = set(existing.replicates) if existing else set()
    notes = [
        f"{s.name}: replicate {r} has not finished (no DONE mark), left out"
        for s in runs
        for r in s.unfinished
        if r not in replicates
    ]
    return Merged(target, replicates, sorted(set(replicates) - before), settings_of(target), notes)


def _holding(source: Source | None) -> tuple | None:
    return None if source is None else (source.replicates, source.items)


def _open_sources(study: RunDir, paths: list[str | Path]) -> list[Source]:
    """The sources, each once (a folder named twice is merged once), in the order given."""
    if not paths:
        raise LinpathError("name at least one run folder to merge")
    seen, out = set(), []
    for path in paths:
        folder = Path(path)
        if not folder.is_dir():
            raise LinpathError(f"no run folder at {path}")
        if folder.resolve() == study.root.resolve():
            raise LinpathError(f"{path} is the study itself; name the run folders to merge into it")
        if folder.resolve() not in seen:
            seen.add(folder.resolve())
            run = RunDir(folder)
            source = _holdings(str(path), run, read_spec(run), strict=True)
            if not source.replicates:
                raise LinpathError(f"{path} has no finished replicate to merge (no replicate-<r>/DONE)")
            out.append(source)
    return out


def _holdings(name: str, run: RunDir, spec: Spec | None, strict: bool) -> Source:
    """What `run` holds. Strict (a source): a damaged item file, or one of an unfinished
    replicate, is refused; not strict (the study, after an interrupted merge): left aside."""
    finished = run.replicates()
    unfinished = [r for r in run.started_replicates() if r not in finished]
    source = Source(name, run, spec, spec_versions(run), finished, unfinished)
    for key in run.swept_settings():
        for path in run.item_files(key):
            problem = item_problem(path)
            if problem is None:
                r, t = RunDir.item_of(path)
                if r in finished:
                    source.items.setdefault(key, {})[(r, t)] = path
                    continue
                problem = f"it is of replicate {r}, which has not finished in {name}"
            if strict:
                raise LinpathError(
                    f"{path}: {problem}; sweep it again there, or delete the file to merge without it"
                )
    return source


def _common_spec(runs: list[Source]) -> Spec:
    """The spec all runs share: the same hash, or a refusal naming the folders that differ."""
    first = runs[0]
    others = [s for s in runs if s.spec.hash != first.spec.hash]
    if others:
        listed = ", ".join(f"{s.name} has {s.spec.hash}" for s in others)
        raise LinpathError(
            f"runs of different specs cannot be merged: {first.name} has hash {first.spec.hash}, {listed}"
        )
    return first.spec


def _existing_study(study: RunDir, spec_hash: str) -> Source | None:
    """None for a new (or empty) study folder; the study, for one an earlier merge of the same
    hash made; else a refusal that leaves the folder untouched."""
    root = study.root
    named = _HASH_SUFFIX.search(root.name)
    if named and named.group(1) != spec_hash:
        raise LinpathError(
            f"{root}'s name ends in hash {named.group(1)}, the runs' is {spec_hash}; choose another"
        )
    if not root.exists():
        return None
    if not root.is_dir():
        raise LinpathError(f"{root} exists and is not a folder; choose another study folder")
    if not [p for p in root.iterdir() if not (p.name.startswith(".") and p.name.endswith(".lock"))]:
        return None
    if not study.merged_record.is_file():
        raise LinpathError(
            f"{root} exists and was not made by 'linpath merge' (no merged.json); "
            "merge into a new folder (nothing was changed)"
        )
    recorded = _record(study).get("hash")
    if recorded != spec_hash:
        raise LinpathError(f"{root} is a merged study of hash {recorded}, the runs' is {spec_hash}")
    spec = read_spec(study) if study.spec_path.exists() else None
    return _holdings(str(root), study, spec, strict=False)


def _record(study: RunDir) -> dict:
    try:
        record = json.loads(study.merged_record.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LinpathError(f"cannot read {study.merged_record}: {e}") from None
    if not isinstance(record, dict) or not isinstance(record.get("sources", []), list):
        raise LinpathError(f"{study.merged_record} is not a merge record")
    return record


def _settings_to_merge(holders: list[Source], wanted: list[str] | None) -> list[str]:
    """The sweep settings to merge: `wanted`, or every one; each must be held by every run."""
    held = sorted({key for s in holders for key in s.items})
    unknown = [key for key in wanted or [] if key not in held]
    if unknown:
        raise LinpathError(
            f"--setting {unknown[0]}: no run holds this sweep setting (they hold: {', '.join(held) or 'none'})"
        )
    keys = sorted(set(wanted)) if wanted else held
    partial = [key for key in keys if any(not s.holds(key) for s in holders)]
    if partial:
        said = "; ".join(
            f"{key} [" + ", ".join(f"{s.name}: {_replicate_list(s.holds(key))}" for s in holders) + "]"
            for key in partial
        )
        raise LinpathError(
            f"sweep settings held by some runs only (merge those every run holds with --setting KEY): {said}"
        )
    return keys


def _replicate_list(replicates: list[int]) -> str:
    return f"replicates {','.join(map(str, replicates))}" if replicates else "none"


def _check_agreement(holders: list[Source], keys: list[str]) -> None:
    """A replicate held by two runs must carry the same numbers in both."""
    for r in sorted({r for s in holders for r in s.replicates}):
        first, *others = [s for s in holders if r in s.replicates]
        for other in others:
            what = _difference(first, other, r, keys)
            if what:
                raise LinpathError(
                    f"replicate {r} is in {first.name} and {other.name} with different numbers ({what}); "
                    "leave one of them out"
                )


def _difference(a: Source, b: Source, r: int, keys: list[str]) -> str | None:
    """What differs between replicate r in a and in b (None: nothing; the seconds training took
    and provenance.json may differ)."""
    if _text(a.run.done_marker(r)).strip() != _text(b.run.done_marker(r)).strip():
        return "its DONE step"
    if _log_numbers(a.run, r) != _log_numbers(b.run, r):
        return a.run.train_log(r).name
    for key in keys:
        for (rr, t), path in sorted(a.items.get(key, {}).items()):
            twin = b.items.get(key, {}).get((rr, t))
            if rr == r and twin is not None and path.read_bytes() != twin.read_bytes():
                return f"sweep item {key}/{path.name}"
    return None


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _log_numbers(run: RunDir, r: int) -> list[dict] | None:
    path = run.train_log(r)
    if not path.exists():
        return None
    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_csv_rows(path)]


def _write_record(study: RunDir, spec: Spec, runs: list[Source], keys: list[str]) -> None:
    """merged.json: the hash, and per source its folder, replicates, settings and versions (a
    source merged again replaces its entry). Written first, so an interrupted merge can be resumed."""
    record = _record(study) if study.merged_record.exists() else {"hash": spec.hash, "preset": spec.preset}
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entries = {entry.get("path"): entry for entry in record.get("sources", []) if isinstance(entry, dict)}
    for s in runs:
        entries[str(s.run.root.resolve())] = {
            "path": str(s.run.root.resolve()),
            "replicates": s.replicates,
            "settings": {key: s.holds(key) for key in keys if s.holds(key)},
            "versions": s.versions,
            "merged": now,
        }
    record["sources"] = list(entries.values())
    atomic_write_text(study.merged_record, json.dumps(record, indent=2) + "\n")


def _copy_files(study: RunDir, holders: list[Source], keys: list[str]) -> None:
    """Each replicate's log, provenance and DONE mark (in that order), then the items, each from
    the first run that holds it; what the study holds already stays as it is."""
    home = study.root.resolve()
    for r in sorted({r for s in holders for r in s.replicates}):
        having = [s for s in holders if r in s.replicates]
        for where in (RunDir.train_log, RunDir.provenance, RunDir.done_marker):
            source = next((s for s in having if where(s.run, r).exists()), None)
            if source is not None and source.run.root.resolve() != home:
                _copy(where(source.run, r), where(study, r))
    for key in keys:
        for item in sorted({item for s in holders for item in s.items.get(key, {})}):
            source = next(s for s in holders if item in s.items.get(key, {}))
            if source.run.root.resolve() != home:
                path = source.items[key][item]
                _copy(path, study.setting_dir(key) / path.name)


def _copy(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    if not (dst.exists() and dst.read_bytes() == data):
        atomic_write(dst, lambda f: f.write(data))
