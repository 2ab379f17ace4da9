"""The audit of a checkpoint grid (a run imported by runs/import_grid.py) against the ways
published grids are known to be wrong: byte-identical checkpoints across steps (EleutherAI/pythia
#195, #205; allenai/OLMo#915), a step serving another checkpoint's shard (pythia#206), missing
revisions (pythia#94, #107, #141), a wrong file behind an outlier (pythia#108).

Findings, one line each (the kinds of analysis/audit.py where they mean the same):
  missing         steps the selection asked for that a replicate does not publish
  duplicate-file  revisions whose weights are byte-identical (every shard's sha256 equal)
  foreign-shard   a shard of one revision byte-identical to a shard of a revision with other
                  weights, or (tensors read) holding the same tensors as one
  equal-tensors   revisions whose files differ but whose tensors are all equal (tensors read)
  config          a revision whose config.json differs from replicate 0's final one (but for
                  UNCOMPARED_CONFIG_KEYS), its first differing entries named
  changed         a revision whose files are no longer those imported
  unreadable      a shard that does not read as safetensors
  distance        ‖θ_T − θ_t‖ not roughly decreasing in t (as analysis/audit.py measures it:
                  DISTANCE_TOLERANCE), over the revisions without another finding
The first four need only grid.json's hashes: nothing is downloaded. The tensors (distance,
equal tensors) are read only from revisions whose folders are local (a mirror, a copy, the Hub's
cache), or downloaded first with fetch=True; what they give is cached in audit/grid.json under
the files' sha256, so a revision is read once, however often the audit runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.grid_record import UNCOMPARED_CONFIG_KEYS, GridRecord, Revision, state_folder
from linpath.io.hf_folder import ModelFolder
from linpath.io.rundir import RunDir
from linpath.io.tensors import tensor_bytes

DISTANCE_TOLERANCE = 0.1  # as analysis/audit.py's: a share of the largest distance
SHOWN = 4


@dataclass(frozen=True)
class GridFinding:
    """One defect of the grid (the fields of analysis/audit.py's Finding)."""

    kind: str
    replicate: int
    steps: tuple[int, ...]
    files: tuple[str, ...]  # revisions as r<replicate>:<name>, shards as r<replicate>:<name>/<file>
    message: str
    items: tuple[tuple[int, int], ...] = ()  # every (replicate, step) it concerns


@dataclass
class GridAudit:
    """The findings, and the revisions whose tensors were not read (not local, fetch=False)."""

    findings: list[GridFinding] = field(default_factory=list)
    unread: list[tuple[int, int]] = field(default_factory=list)
    facts: dict = field(default_factory=dict)  # (replicate, step) -> TensorFacts of those read
    cache: TensorCache | None = None  # what the tensors gave, to save() once the caller may write


def _label(r: int, rev: Revision) -> str:
    return f"r{r}:{rev.name}"


def _labels(items: list[tuple[int, Revision]]) -> str:
    names = [_label(r, rev) for r, rev in items[:SHOWN]]
    return ", ".join(names) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def missing_findings(record: GridRecord) -> list[GridFinding]:
    out = []
    for r, grid in record.replicates.items():
        if grid.missing:
            shown = ", ".join(map(str, grid.missing[:12])) + (" ..." if len(grid.missing) > 12 else "")
            out.append(
                GridFinding(
                    "missing",
                    r,
                    grid.missing,
                    (grid.source,),
                    f"replicate {r} ({grid.source}) publishes no revision at step {shown}, which the "
                    f"selection {record.selection!r} asks for: those paths cannot be swept",
                    tuple((r, t) for t in grid.missing),
                )
            )
    return out


def _everything(record: GridRecord) -> list[tuple[int, int, Revision]]:
    return [(r, t, rev) for r, g in sorted(record.replicates.items()) for t, rev in g.revisions.items()]


def duplicate_findings(record: GridRecord) -> list[GridFinding]:
    """Revisions (of any replicate) whose shards are byte-identical, by the recorded sha256."""
    groups: dict[str, list[tuple[int, int, Revision]]] = {}
    for r, t, rev in _everything(record):
        groups.setdefault(rev.payload, []).append((r, t, rev))
    out = []
    for group in (g for g in groups.values() if len(g) > 1):
        items = [(r, rev) for r, _, rev in group]
        out.append(
            GridFinding(
                "duplicate-file",
                group[0][0],
                tuple(t for _, t, _ in group),
                tuple(_label(r, rev) for r, rev in items),
                f"{_labels(items)} serve byte-identical weights (every shard's sha256 equal): one "
                f"state under {len(group)} steps; a wrong grid, unless the learning rate was 0 between them",
                tuple((r, t) for r, t, _ in group),
            )
        )
    return out


def foreign_shard_findings(record: GridRecord) -> list[GridFinding]:
    """A shard file shared by revisions whose weights otherwise differ (pythia#206)."""
    by_sha: dict[str, list[tuple[int, int, Revision, str]]] = {}
    for r, t, rev in _everything(record):
        for shard in rev.shards:
            by_sha.setdefault(shard.sha256, []).append((r, t, rev, shard.name))
    out = []
    for holders in by_sha.values():
        if len({rev.payload for _, _, rev, _ in holders}) < 2:
            continue  # one revision, or byte-identical revisions (a duplicate-file finding)
        shown = ", ".join(f"{_label(r, rev)}/{name}" for r, _, rev, name in holders[:SHOWN])
        sha = next(f.sha256 for f in holders[0][2].shards if f.name == holders[0][3])
        out.append(
            GridFinding(
                "foreign-shard",
                holders[0][0],
                tuple(t for _, t, _, _ in holders),
                tuple(f"{_label(r, rev)}/{name}" for r, _, rev, name in holders),
                f"one shard file (sha256 {sha[:12]}…) is served by revisions whose other weights differ: "
                f"{shown}; a checkpoint holding another checkpoint's shard",
                tuple((r, t) for r, t, _, _ in holders),
            )
        )
    return out


def config_findings(record: GridRecord) -> list[GridFinding]:
    """Revisions whose config differs from replicate 0's final revision's."""
    first = min(record.replicates)
    reference = record.replicates[first].revisions[record.final_step(first)]
    ref = record.configs[reference.config]
    out = []
    for r, t, rev in _everything(record):
        if rev.config == reference.config:
            continue
        config = record.configs[rev.config]
        keys = sorted(
            k
            for k in set(ref) | set(config)
            if k not in UNCOMPARED_CONFIG_KEYS and ref.get(k) != config.get(k)
        )
        shown = "; ".join(f"{k}: {config.get(k)!r} (final: {ref.get(k)!r})" for k in keys[:3])
        out.append(
            GridFinding(
                "config",
                r,
                (t,),
                (_label(r, rev),),
                f"{_label(r, rev)}'s config.json differs from {_label(first, reference)}'s: {shown}"
                + (f" and {len(keys) - 3} more" if len(keys) > 3 else ""),
                ((r, t),),
            )
        )
    return out


@dataclass
class TensorFacts:
    """What one revision's tensors gave: a digest per shard and of the whole (name, dtype,
    shape and bytes of every tensor: sharding aside), its distance to the final state."""

    shards: dict[str, str]  # shard file name -> digest of its tensors
    digest: str
    distance: float | None = None


class TensorCache:
    """audit/grid.json: TensorFacts by the revision's weight payload (its shards' sha256), and
    distances by (payload, final payload); content-addressed, so never stale."""

    def __init__(self, run: RunDir):
        self.path = run.grid_audit_cache
        try:
            self.entries = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (OSError, ValueError):
            self.entries = {}
        self.entries.setdefault("revisions", {})
        self.entries.setdefault("distances", {})

    def facts(self, rev: Revision) -> TensorFacts | None:
        d = self.entries["revisions"].get(rev.payload)
        return TensorFacts(d["shards"], d["digest"]) if d else None

    def put(self, rev: Revision, facts: TensorFacts) -> None:
        self.entries["revisions"][rev.payload] = {"shards": facts.shards, "digest": facts.digest}

    def save(self) -> None:
        with contextlib.suppress(LinpathError, OSError):
            atomic_write_text(self.path, json.dumps(self.entries, sort_keys=True) + "\n")


def _tensor_digest(name: str, tensor: torch.Tensor) -> str:
    h = hashlib.sha256(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    h.update(tensor_bytes(tensor))
    return h.hexdigest()


def _combined(digests: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{k}={digests[k]};" for k in sorted(digests)).encode()).hexdigest()


def read_tensors(folder: Path, final: Path | None) -> TensorFacts:
    """One pass over a revision's tensors, a tensor at a time: their digests and, given the
    final state's folder, ‖θ_T − θ_t‖ over the floating-point tensors both hold."""
    state, end = ModelFolder(folder), ModelFolder(final) if final is not None else None
    per_tensor, per_shard, squares = {}, {}, 0.0
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(state.reader())
        end_reader = stack.enter_context(end.reader()) if end is not None else None
        for name in sorted(state.entries, key=lambda k: (state.entries[k].file, k)):
            tensor = reader.get(name)
            per_tensor[name] = _tensor_digest(name, tensor)
            per_shard.setdefault(state.entries[name].file.name, {})[name] = per_tensor[name]
            other = end.entries.get(name) if end is not None else None
            if tensor.is_floating_point() and other is not None and other.shape == tuple(tensor.shape):
                squares += float((end_reader.get(name).double() - tensor.double()).pow(2).sum())
    shards = {shard: _combined(d) for shard, d in per_shard.items()}
    return TensorFacts(shards, _combined(per_tensor), math.sqrt(squares) if final is not None else None)


def revision_facts(rev: Revision, final_rev: Revision, folder: Path, final: Path | None, cache: TensorCache):
    """TensorFacts of a revision from the cache, else read (and cached)."""
    facts = cache.facts(rev)
    key = f"{rev.payload}|{final_rev.payload}"
    distance = cache.entries["distances"].get(key)
    if facts is None or (distance is None and final is not None):
        facts = read_tensors(folder, final)
        cache.put(rev, facts)
        if facts.distance is not None:
            cache.entries["distances"][key] = facts.distance
    facts.distance = cache.entries["distances"].get(key)
    return facts


def _finding(kind: str, r: int, t: int, rev: Revision, message: str) -> GridFinding:
    return GridFinding(kind, r, (t,), (_label(r, rev),), message, ((r, t),))


def tensor_pass(
    run: RunDir, record: GridRecord, replicates, fetch: bool, cache: TensorCache, **hub
) -> GridAudit:
    """TensorFacts of every local revision (`hub`: cache_dir, token); a revision changed since
    the import or unreadable is a finding, one not local (fetch False) is listed as unread."""
    audit, facts = GridAudit(), {}
    for r in replicates:
        grid, final_t = record.replicates[r], record.final_step(r)
        folders = {}
        for t, rev in grid.revisions.items():
            try:
                folder = state_folder(run, record, r, t, fetch, **hub)
            except LinpathError as e:
                audit.findings.append(_finding("changed", r, t, rev, f"{_label(r, rev)}: {e}"))
                continue
            if folder is None:
                audit.unread.append((r, t))
            else:
                folders[t] = folder
        final = folders.get(final_t)
        for t, folder in folders.items():
            rev = grid.revisions[t]
            try:
                facts[(r, t)] = revision_facts(rev, grid.revisions[final_t], folder, final, cache)
            except LinpathError as e:
                audit.findings.append(_finding("unreadable", r, t, rev, f"{_label(r, rev)}: {e}"))
    audit.facts = facts
    return audit


def equal_tensor_findings(record: GridRecord, facts: dict) -> list[GridFinding]:
    """Revisions whose files differ but whose tensors are all equal."""
    groups: dict[str, list[tuple[int, int]]] = {}
    for (r, t), f in sorted(facts.items()):
        groups.setdefault(f.digest, []).append((r, t))
    out = []
    for group in groups.values():
        revs = [(r, record.replicates[r].revisions[t]) for r, t in group]
        if len({rev.payload for _, rev in revs}) < 2:
            continue  # byte-identical: a duplicate-file finding already
        out.append(
            GridFinding(
                "equal-tensors",
                group[0][0],
                tuple(t for _, t in group),
                tuple(_label(r, rev) for r, rev in revs),
                f"{_labels(revs)} hold equal tensors in different files: one state under {len(group)} steps",
                tuple(group),
            )
        )
    return out


def tensor_shard_findings(record: GridRecord, facts: dict) -> list[GridFinding]:
    """A shard whose tensors equal another revision's shard, in files that differ (re-saved)."""
    holders: dict[str, list[tuple[int, int, str]]] = {}
    for (r, t), f in sorted(facts.items()):
        for shard, digest in f.shards.items():
            holders.setdefault(digest, []).append((r, t, shard))
    out = []
    for group in holders.values():
        revs = [record.replicates[r].revisions[t] for r, t, _ in group]
        shas = {
            next((f.sha256 for f in rev.files if f.name == shard), "")
            for rev, (_, _, shard) in zip(revs, group)
        }
        if len({facts[(r, t)].digest for r, t, _ in group}) < 2 or len(shas) < 2:
            continue  # one state, or byte-identical shards (found by their sha256)
        names = [f"{_label(r, rev)}/{shard}" for rev, (r, _, shard) in zip(revs, group)]
        out.append(
            GridFinding(
                "foreign-shard",
                group[0][0],
                tuple(t for _, t, _ in group),
                tuple(names),
                f"shards holding the same tensors are served by revisions whose other weights differ: "
                f"{', '.join(names[:SHOWN])}; a checkpoint holding another checkpoint's shard",
                tuple((r, t) for r, t, _ in group),
            )
        )
    return out


def distance_findings(
    record: GridRecord, facts: dict, flagged: set, tolerance: float = DISTANCE_TOLERANCE
) -> list[GridFinding]:
    """Per replicate, over its revisions without another finding: a step t_j whose distance to
    the final state exceeds the nearest earlier step's by more than tolerance·D (D the largest
    distance), grouped under that earlier step (analysis/audit.py's rule)."""
    out = []
    for r, grid in record.replicates.items():
        kept = [
            (t, facts[(r, t)].distance)
            for t in sorted(grid.revisions)
            if (r, t) in facts and (r, t) not in flagged and facts[(r, t)].distance is not None
        ]
        scale = max((d for _, d in kept), default=0.0)
        if scale <= 0:
            continue
        later: dict[int, list[int]] = {}
        nearest = 0
        for j in range(1, len(kept)):
            if kept[j][1] - kept[nearest][1] > tolerance * scale:
                later.setdefault(nearest, []).append(j)
            if kept[j][1] < kept[nearest][1]:
                nearest = j
        for i, group in later.items():
            near, steps = grid.revisions[kept[i][0]], [kept[j][0] for j in group]
            far = [grid.revisions[t] for t in steps]
            out.append(
                GridFinding(
                    "distance",
                    r,
                    (kept[i][0], *steps),
                    tuple(_label(r, rev) for rev in (near, *far)),
                    f"replicate {r}: the distance to the final state is not roughly decreasing in t: "
                    f"{_label(r, near)} lies {kept[i][1] / scale:.3f}·D from it, nearer than the later "
                    f"{_labels([(r, rev) for rev in far])} (up to {max(kept[j][1] for j in group) / scale:.3f}·D; "
                    f"D = {scale:.4g}; tolerance {tolerance}·D): a state from another time?",
                    tuple((r, t) for t in (kept[i][0], *steps)),
                )
            )
    return out


def grid_audit(
    run_dir,
    replicates: list[int] | None = None,
    fetch: bool = False,
    tolerance: float = DISTANCE_TOLERANCE,
    save: bool = True,
    cache_dir=None,
    token=None,
) -> GridAudit:
    """Every finding of a grid run (see the module's docstring); `fetch` downloads the revisions
    not yet local to read their tensors; the tensor cache is saved when `save`."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    record = GridRecord.read(run.grid_record)
    replicates = sorted(record.replicates) if replicates is None else replicates
    findings = missing_findings(record) + duplicate_findings(record)
    findings += foreign_shard_findings(record) + config_findings(record)
    cache = TensorCache(run)
    audit = tensor_pass(run, record, replicates, fetch, cache, cache_dir=cache_dir, token=token)
    findings += audit.findings
    findings += equal_tensor_findings(record, audit.facts) + tensor_shard_findings(record, audit.facts)
    flagged = {item for f in findings for item in f.items}
    findings += distance_findings(record, audit.facts, flagged, tolerance)
    audit.cache = cache
    if save:
        cache.save()
    wanted = set(replicates)
    audit.findings = [f for f in findings if not f.items or any(r in wanted for r, _ in f.items)]
    return audit


def grid_findings(run_dir, replicates=None, tolerance: float = DISTANCE_TOLERANCE, save: bool = True):
    """The findings of grid_audit over the revisions already local (analysis/audit.py's hook)."""
    return grid_audit(run_dir, replicates, fetch=False, tolerance=tolerance, save=save).findings


def unread_note(audit: GridAudit) -> str | None:
    """A note for the revisions whose tensors were not read (distance and equal tensors unchecked)."""
    if not audit.unread:
        return None
    n = len(audit.unread)
    return (
        f"the tensors of {n} revision{'s' * (n != 1)} were not read (not downloaded): the distance and "
        "equal-tensor checks leave them out (the hash checks cover every revision)"
    )
