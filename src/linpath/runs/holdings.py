"""What each run folder given to `linpath merge` holds (runs/merge.py), and the checks that its
holdings can form one study: the same numbers for a replicate held twice, the same evaluation
data for a setting of an external run, the setting's examples in every item, and every
replicate holding a path at every t of each merged setting (else the study's report would
average different replicates at different t)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from linpath.config.spec import Spec
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.io.tables import read_csv_rows
from linpath.runtime.provenance import spec_versions
from linpath.sweep.items import item_problem, odd_examples, recorded_examples

INCOMPLETE_REMEDY = (
    "finish those sweeps ('linpath sweep' resumes), merge only the other settings (--setting KEY), "
    "or pass --allow-incomplete (the report then says at each t how many replicates it averaged)"
)


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

    def steps(self, setting: str, r: int) -> set[int]:
        return {t for rr, t in self.items.get(setting, {}) if rr == r}


def holdings(name: str, run: RunDir, spec: Spec | None, strict: bool) -> Source:
    """What `run` holds. Strict (a source): a damaged item file, or one of an unfinished
    replicate, is refused; not strict (the study, after an interrupted merge): left aside."""
    finished = run.replicates()
    unfinished = [r for r in run.started_replicates() if r not in finished]
    bad = next((r for r in finished if run.done_step(r) is None), None)
    if bad is not None and strict:
        raise LinpathError(
            f"{run.done_marker(bad)} does not hold the step replicate {bad} finished at (edited by hand?); "
            f"write it back (its training log's last step) or leave {name} out"
        )
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


def check_agreement(holders: list[Source], keys: list[str]) -> None:
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


def check_data_records(holders: list[Source], keys: list[str]) -> None:
    """An external run's setting records the data it was evaluated on (sweep/<key>/data.json):
    runs holding one setting must have evaluated it on the same data."""
    for key in keys:
        seen: tuple[str, str] | None = None
        for s in holders:
            record = data_record(s.run, key)
            if record is None or key not in s.items:
                continue
            if seen is not None and record.get("sha256") != seen[1]:
                raise LinpathError(
                    f"sweep setting {key} was evaluated on other data in {s.name} ({record.get('data')}) "
                    f"than in {seen[0]}: merge it from one of them only (--setting the others)"
                )
            seen = seen or (s.name, record.get("sha256"))


def data_record(run: RunDir, key: str) -> dict | None:
    """An external run's data.json of setting `key` (None where there is none)."""
    path = run.setting_data(key)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise LinpathError(f"cannot read {path}: {e}") from None
    if not isinstance(record, dict):
        raise LinpathError(f"{path} is not a data record")
    return record


def check_examples(holders: list[Source], keys: list[str]) -> None:
    """Every item of a setting, whichever run holds it, evaluated on the setting's examples."""
    for key in keys:
        paths = [path for s in holders for path in s.items.get(key, {}).values()]
        recorded = next((n for s in holders if (n := recorded_examples(s.run, key)) is not None), None)
        odd = odd_examples(paths, recorded)
        if odd:
            path, problem = sorted(odd.items())[0]
            raise LinpathError(f"{path}: {problem}; delete it to merge without it")


def missing_paths(holders: list[Source], keys: list[str], study: Source | None) -> list[str]:
    """Per merged setting, the replicates of the study-to-be that lack a path at some t the
    setting holds; per setting the study holds already but is not merged, the replicates this
    merge adds without it. Each as 'key: folder: replicate r lacks t = ...'."""
    replicates = sorted({r for s in holders for r in s.replicates})
    out = []
    for key in keys:
        held = {r: set().union(*(s.steps(key, r) for s in holders)) for r in replicates}
        steps = set().union(*held.values())
        lacking = [(r, sorted(steps - held[r])) for r in replicates if steps - held[r]]
        if lacking:
            out.append(
                f"{key}: " + ", ".join(_lack(holders, key, r, missing, steps) for r, missing in lacking)
            )
    for key in sorted(study.items) if study is not None else []:
        added = [r for r in replicates if r not in study.holds(key)]
        if key not in keys and added:
            out.append(
                f"{key} (the study's, not merged): replicates {', '.join(map(str, added))} would have none"
            )
    return out


def _lack(holders: list[Source], key: str, r: int, missing: list[int], steps: set[int]) -> str:
    """Where replicate r's paths of `key` are short: the run holding some of them, else the
    first run holding the replicate."""
    having = [s for s in holders if r in s.replicates]
    where = next((s for s in having if s.steps(key, r)), having[0]).name
    if len(missing) == len(steps):
        return f"{where}: replicate {r} holds none of its paths"
    shown = ", ".join(map(str, missing[:6])) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return f"{where}: replicate {r} lacks t = {shown}"
