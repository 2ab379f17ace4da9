"""`linpath merge STUDY RUN...`: one study from run folders of one spec whose replicates were
trained apart (one per GPU lease, one per cluster job, one Keeper per machine), each swept where
it was made.

STUDY receives spec.json, each finished replicate's DONE mark, train_log.csv and provenance.json,
and every sweep item file (each checked with sweep.items.item_problem first) with its digest,
and an external run's data record per setting, but no checkpoint and no resume file: `linpath
report STUDY` reads only those. The tables are then rebuilt from the items (sweep.paths_tables.rebuild_tables)
in the fixed order that makes them byte for byte those of one run that trained and swept the
same replicates itself. Runs of linpath's presets, Keeper and callback runs and `linpath import`
runs merge alike: their spec hashes must agree.

Refused, in one line naming the folders, before anything is written: a source that is not a run
folder (no spec.json) or is STUDY itself, or is being swept now; runs of different spec hashes; a
replicate held by two runs with different numbers (its DONE step, its training log apart from
the seconds column, an item file of the same t; identical copies, e.g. the same run given twice,
are fine, and the first is kept); a damaged item file, one of a replicate that has not finished,
or one evaluated on other examples than the setting's; a setting of an external run evaluated on
other data in two runs; and a merged setting (all, or those named in `settings`) that is
unfinished: a replicate of the study-to-be without a path at some t the setting holds (a sweep
killed or still running, a file deleted), which the study's report would average over fewer
replicates. `allow_incomplete` merges such settings anyway; the report then states at each t how
many replicates it averaged and withholds its verdicts.

STUDY: a new (or empty) folder is created. One made by an earlier merge of the same hash (it has
merged.json) takes more replicates and settings (a setting new to the study too): it counts as
one of the runs, none of its files is replaced, and merged.json records every source. Any other
existing folder is refused and left as it was: nothing a user made is overwritten. An
interrupted merge is resumed by running it again: merged.json and spec.json are written first,
each replicate's DONE mark last, so a replicate whose copy was cut short is not yet the study's
(its copied files are left aside, then replaced by the rerun's).

The study's spec.json names the versions of the merge; each source's own (those its replicates
were trained with, when they have no provenance.json) are kept in merged.json.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from linpath.analysis.curves import settings_of
from linpath.config.external import differences, is_external
from linpath.config.spec import Spec, read_spec, write_spec
from linpath.errors import LinpathError
from linpath.io.files import atomic_write, atomic_write_text
from linpath.io.rundir import RunDir
from linpath.runs.holdings import (
    INCOMPLETE_REMEDY,
    Source,
    check_agreement,
    check_data_records,
    check_examples,
    holdings,
    missing_paths,
)
from linpath.sweep.items import digest, write_item_bytes
from linpath.sweep.paths_tables import rebuild_tables

_HASH_SUFFIX = re.compile(r"-([0-9a-f]{10})$")


@dataclass
class Merged:
    """What a merge left: the study, all its replicates, those this merge added, its settings."""

    study: RunDir
    replicates: list[int]
    added: list[int]
    settings: list[str]
    notes: list[str]


def merge_runs(
    study: str | Path,
    sources: list[str | Path],
    settings: list[str] | None = None,
    allow_incomplete: bool = False,
) -> Merged:
    """Merge the run folders `sources` into the study folder `study`, only the sweep settings
    `settings` if given (else every one); each merged setting must hold a path of every
    replicate at every t it holds, unless `allow_incomplete`."""
    target = RunDir(study)
    runs = _open_sources(target, sources)
    spec = _common_spec(runs)
    existing = _existing_study(target, spec.hash)
    study_holds = existing is not None and bool(existing.replicates or existing.items)
    holders = ([existing] if study_holds else []) + runs
    keys = _settings_to_merge(holders, settings)
    check_agreement(holders, keys)
    check_data_records(holders, keys)
    check_examples(holders, keys)
    notes = _check_complete(holders, keys, existing if study_holds else None, allow_incomplete)
    replicates = sorted({r for s in holders for r in s.replicates})
    counts = [replicates[-1] + 1] + [s.spec.replicates for s in holders if s.spec is not None]
    spec = replace(spec, replicates=max(counts))
    with target.lock("merge"):
        now = _existing_study(target, spec.hash)
        if _holding(now) != _holding(existing):  # another merge got there first
            raise LinpathError(f"{target.root} changed while this merge was checking it; run the merge again")
        target.remove_stale_temporaries(target.root)
        _write_record(target, spec, runs, keys)
        if existing is None or existing.spec is None or existing.spec.replicates < spec.replicates:
            write_spec(target, spec)
        _copy_files(target, holders, keys)
        rebuild_tables(target)
    before = set(existing.replicates) if existing else set()
    notes += [
        f"{s.name}: replicate {r} has not finished (no DONE mark), left out"
        for s in runs
        for r in s.unfinished
        if r not in replicates
    ]
    return Merged(target, replicates, sorted(set(replicates) - before), settings_of(target), notes)


def _check_complete(holders: list[Source], keys: list[str], study: Source | None, allow: bool) -> list[str]:
    """The refusal of unfinished settings (runs/holdings.missing_paths), or with `allow` the
    notes saying what the study lacks."""
    missing = missing_paths(holders, keys, study)
    if missing and not allow:
        raise LinpathError(
            f"sweep settings not every replicate has finished: {'; '.join(missing)}; {INCOMPLETE_REMEDY}"
        )
    return [f"merged incomplete: {m}" for m in missing]


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
            out.append(_open_source(str(path), RunDir(folder)))
    return out


def _open_source(name: str, run: RunDir) -> Source:
    spec = read_spec(run, external_ok=True)
    for stage, doing in (("sweep", "swept"), ("merge", "merged into")):
        if pids := run.running(stage):
            raise LinpathError(
                f"{name} is being {doing} now (pid {', '.join(pids)}): merge it when that has finished"
            )
    source = holdings(name, run, spec, strict=True)
    if not source.replicates:
        raise LinpathError(f"{name} has no finished replicate to merge (no replicate-<r>/DONE)")
    return source


def _common_spec(runs: list[Source]) -> Spec:
    """The spec all runs share: the same hash, or a refusal naming the folders that differ."""
    first = runs[0]
    others = [s for s in runs if s.spec.hash != first.spec.hash]
    if others:
        listed = ", ".join(f"{s.name} has {s.spec.hash}{_how(first.spec, s.spec)}" for s in others)
        raise LinpathError(
            f"runs of different specs cannot be merged: {first.name} has hash {first.spec.hash}, {listed}"
        )
    return first.spec


def _how(a, b) -> str:
    """How two external specs differ, for the refusal (presets: their hashes say it)."""
    return f" ({differences(a, b)})" if is_external(a) and is_external(b) else ""


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
    spec = read_spec(study, external_ok=True) if study.spec_path.exists() else None
    return holdings(str(root), study, spec, strict=False)


def _record(study: RunDir) -> dict:
    """merged.json, checked: an object whose sources are objects naming their folder."""
    try:
        record = json.loads(study.merged_record.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else e
        raise LinpathError(f"cannot read {study.merged_record}: {reason}") from None
    sources = record.get("sources", []) if isinstance(record, dict) else None
    if not isinstance(sources, list) or not all(
        isinstance(s, dict) and isinstance(s.get("path"), str) for s in sources
    ):
        raise LinpathError(
            f"{study.merged_record} is not a merge record (edited by hand?); nothing was changed"
        )
    return record


def _settings_to_merge(holders: list[Source], wanted: list[str] | None) -> list[str]:
    """The sweep settings to merge: `wanted`, or every one a run (or the study) holds."""
    held = sorted({key for s in holders for key in s.items})
    unknown = [key for key in wanted or [] if key not in held]
    if unknown:
        raise LinpathError(
            f"--setting {unknown[0]}: no run holds this sweep setting (they hold: {', '.join(held) or 'none'})"
        )
    return sorted(set(wanted)) if wanted else held


def _write_record(study: RunDir, spec: Spec, runs: list[Source], keys: list[str]) -> None:
    """merged.json: the hash, and per source its folder, replicates, settings and versions (a
    source merged again replaces its entry). Written first, so an interrupted merge can be resumed."""
    record = _record(study) if study.merged_record.exists() else {"hash": spec.hash, "preset": spec.preset}
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entries = {entry["path"]: entry for entry in record.get("sources", [])}
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
    """Each replicate's log and provenance, the items (with their digests) and each setting's
    data record, each from the first run that holds it, then the DONE marks: a replicate is the
    study's only once all of its files are. What the study holds already stays as it is."""
    home = study.root.resolve()
    replicates = sorted({r for s in holders for r in s.replicates})
    for r in replicates:
        for where in (RunDir.train_log, RunDir.provenance):
            _copy_first(study, holders, r, where, home)
    for key in keys:
        for item in sorted({item for s in holders for item in s.items.get(key, {})}):
            source = next(s for s in holders if item in s.items.get(key, {}))
            if source.run.root.resolve() != home:
                path = source.items[key][item]
                _copy_item(path, study.setting_dir(key) / path.name)
        record = next((s.run.setting_data(key) for s in holders if s.run.setting_data(key).is_file()), None)
        if record is not None and not study.setting_data(key).exists():
            _copy(record, study.setting_data(key))
    for r in replicates:
        _copy_first(study, holders, r, RunDir.done_marker, home)


def _copy_first(study: RunDir, holders: list[Source], r: int, where, home: Path) -> None:
    """Replicate r's file `where` from the first holder of r that has one (none: nothing)."""
    source = next((s for s in holders if r in s.replicates and where(s.run, r).exists()), None)
    if source is not None and source.run.root.resolve() != home:
        _copy(where(source.run, r), where(study, r))


def _copy(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    if not (dst.exists() and dst.read_bytes() == data):
        atomic_write(dst, lambda f: f.write(data))


def _copy_item(src: Path, dst: Path) -> None:
    """An item file and its digest (recorded for the bytes the merge checked: the source's own
    digest where it has one; a file changed since the check is refused)."""
    data = src.read_bytes()
    recorded = RunDir.item_digest(src)
    if recorded.is_file() and recorded.read_text().strip() != digest(data):
        raise LinpathError(f"{src} changed while the merge was reading it; run the merge again")
    same = dst.exists() and dst.read_bytes() == data
    if not (same and RunDir.item_digest(dst).is_file()):
        write_item_bytes(dst, data)
