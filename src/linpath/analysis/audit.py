"""The audit of a run's kept states: are they the states the grid says they are?

Public checkpoint grids are known to be silently wrong: early steps byte-identical, a branch
serving final-era weights, files of another model. For every finished replicate the audit reads
each replicate-<r>/checkpoints/iter-<t>.pt (weights-only) and finds, as one Finding each:
  unreadable      a file that does not load as a state dict
  duplicate-file  files byte-identical to another step's (sha256 of the file)
  equal-tensors   files that differ as files but hold equal tensors (a digest of every tensor's
                  key, dtype, shape and bytes: bitwise equality)
  missing         steps of the run's grid with no file (a preset's schedule with its
                  --keep-steps, an external run's kept steps; none for OpenLTH imports)
  architecture    a state whose keys or shapes are not the final state's
  nonfinite       a state holding NaN or inf
  distance        ‖θ_T − θ_t‖ not roughly decreasing in t (see DISTANCE_TOLERANCE)
  lineage         consecutive kept states whose weight matrices do not correlate: states of two
                  trainings in one replicate (a crash resumed from a fresh model; train/lineage.py)
The sweep refuses duplicates (pipeline.sweep, unless --allow-duplicates); report.md notes every
finding. What a file gave is cached in <run>/audit/cache.json under its size, mtime, ctime and
inode, so a second audit reads only new or rewritten files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from linpath.analysis.grid_audit import grid_findings
from linpath.analysis.trajectory import weight_vector
from linpath.config.spec import read_spec
from linpath.engine.interpolate import check_compatible
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text, file_sha256
from linpath.io.jsonfile import read_json
from linpath.io.rundir import RunDir
from linpath.io.tensors import load_state_dict, nonfinite_problem, tensor_bytes
from linpath.sweep.run import missing_checkpoints
from linpath.train.lineage import Correlation, weight_correlation

KINDS = (
    "unreadable",
    "duplicate-file",
    "equal-tensors",
    "missing",
    "architecture",
    "nonfinite",
    "distance",
    "lineage",
)
DUPLICATES = ("duplicate-file", "equal-tensors")
# d_t = ‖θ_T − θ_t‖ over the trained weights (float entries but BatchNorm's running statistics),
# D = max_t d_t. A step t_j is out of order when d_j exceeds the smallest distance of an earlier
# step by more than DISTANCE_TOLERANCE·D: SGD noise moves late states by a few per cent of D, a
# state from another time (the final's weights served at an early step, a swapped file) by most of it.
DISTANCE_TOLERANCE = 0.1
SHOWN = 4  # files named in one finding's line before "and N more"


@dataclass(frozen=True)
class Finding:
    """One defect of a replicate's kept states, and its one-line message naming the files."""

    kind: str
    replicate: int
    steps: tuple[int, ...]
    files: tuple[Path, ...]
    message: str


@dataclass
class Kept:
    """What one kept file holds, as the audit needs it (see file_facts)."""

    t: int
    path: Path
    sha256: str = ""
    digest: str = ""  # every tensor's key, dtype, shape and bytes
    signature: str = ""  # keys and shapes
    nonfinite: str | None = None
    error: str | None = None
    distance: float | None = None
    previous: Kept | None = None  # the kept state before it that the lineage compares it with
    lineage: Correlation | None = None


class AuditCache:
    """<run>/audit/cache.json: each file's facts under its (size, mtime_ns, ctime_ns, inode);
    distances under the final state's digest. ctime changes with every write and cannot be set
    back by a user (touch -d, os.utime set mtime only), so a file rewritten in place with its
    mtime restored is read again. A damaged cache (not an object, an entry of another form) is
    no cache: its entries are read again. Saved only where the folder can be written."""

    def __init__(self, run: RunDir):
        self.path = run.audit_cache
        self.root = run.root
        try:
            entries = read_json(self.path) if self.path.is_file() else {}
        except LinpathError:
            entries = {}
        self.entries = (
            {k: v for k, v in entries.items() if valid_entry(v)} if isinstance(entries, dict) else {}
        )

    def _key(self, path: Path) -> tuple[str, list[int]]:
        st = path.stat()
        return path.relative_to(self.root).as_posix(), [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def get(self, path: Path) -> dict | None:
        name, stat = self._key(path)
        entry = self.entries.get(name)
        return entry if entry is not None and entry.get("stat") == stat else None

    def put(self, path: Path, facts: dict) -> dict:
        name, stat = self._key(path)
        self.entries[name] = {**facts, "stat": stat}
        return self.entries[name]

    def save(self) -> None:
        with contextlib.suppress(LinpathError, OSError):
            atomic_write_text(self.path, json.dumps(self.entries, sort_keys=True) + "\n")


ENTRY_TEXTS = ("sha256", "digest", "signature")  # a cache entry's fields that are strings


def valid_entry(entry: object) -> bool:
    """Whether a cache entry has the form file_facts writes (else it is read again)."""
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ENTRY_TEXTS):
        return False
    if not all(entry.get(k) is None or isinstance(entry.get(k), str) for k in ("nonfinite", "error")):
        return False
    distance, lineage, stat = entry.get("distance"), entry.get("lineage", {}), entry.get("stat")
    if not isinstance(distance, dict) or not isinstance(lineage, dict) or not isinstance(stat, list):
        return False
    number = lambda v: type(v) in (int, float)  # noqa: E731 (not bool, not a string)
    pair = lambda p: p is None or (isinstance(p, list) and len(p) == 2 and all(map(number, p)))  # noqa: E731
    return all(d is None or number(d) for d in distance.values()) and all(map(pair, lineage.values()))


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(f"{key}|{state[key].dtype}|{tuple(state[key].shape)}|".encode())
        h.update(tensor_bytes(state[key]))
    return h.hexdigest()


def signature(state: dict[str, torch.Tensor]) -> str:
    text = json.dumps(sorted((k, list(v.shape)) for k, v in state.items()))
    return hashlib.sha256(text.encode()).hexdigest()


class RecentStates:
    """load_state_dict with the last two states kept in memory: the audit reads the kept files
    in t order, and the lineage compares each with the one before."""

    def __init__(self):
        self.states: dict[Path, dict] = {}

    def load(self, path: Path) -> dict:
        if path not in self.states:
            if len(self.states) == 2:
                self.states.pop(next(iter(self.states)))
            self.states[path] = load_state_dict(path)
        return self.states[path]


def file_facts(kept: Kept, final: FinalState | None, cache: AuditCache, load=load_state_dict) -> Kept:
    """Fill `kept` from the cache, else from the file (read once, loaded weights-only)."""
    entry = cache.get(kept.path)
    need_distance = final is not None and (entry is None or final.digest not in entry.get("distance", {}))
    if entry is None or need_distance:
        facts = dict(entry or {"distance": {}})
        try:
            state = load(kept.path)
            facts.update(error=None, digest=tensor_digest(state), signature=signature(state))
            facts["nonfinite"] = nonfinite_problem(state)
            if final is not None:
                facts["distance"][final.digest] = _distance(state, final.vector)
        except LinpathError as e:
            facts.update(error=str(e), digest="", signature="", nonfinite=None)
        if entry is None:
            try:
                facts["sha256"] = file_sha256(kept.path)
            except OSError as e:  # a folder named iter-<t>.pt, a file unreadable to this user
                facts.update(
                    sha256="", error=f"cannot read {kept.path}: {e.strerror or e}", digest="", signature=""
                )
        entry = cache.put(kept.path, facts)
    kept.sha256, kept.digest, kept.signature = entry["sha256"], entry["digest"], entry["signature"]
    kept.nonfinite, kept.error = entry["nonfinite"], entry["error"]
    kept.distance = entry["distance"].get(final.digest) if final is not None else None
    return kept


def _distance(state: dict, final_vector: torch.Tensor | None) -> float | None:
    if final_vector is None:
        return None
    try:
        v = weight_vector(state)
    except LinpathError:
        return None
    return float((final_vector - v).norm()) if v.shape == final_vector.shape else None


def final_step(run: RunDir, r: int, saved: list[int]) -> int | None:
    """The replicate's last step: as its DONE mark records it, else its last kept file."""
    done = run.done_step(r)
    return done if done is not None else (saved[-1] if saved else None)


def audit_run(
    run_dir,
    replicates: list[int] | None = None,
    cache: AuditCache | None = None,
    save: bool = True,
    tolerance: float = DISTANCE_TOLERANCE,
) -> list[Finding]:
    """Every finding of the run's finished replicates (see the module docstring); the cache is
    saved when `save` (the sweep saves it itself, once it has written anything)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.root.is_dir():
        raise LinpathError(f"no run folder at {run.root}")
    if run.is_grid:  # revisions of a checkpoint grid, not kept files: their own audit
        return grid_findings(run, replicates, tolerance, save)
    spec = read_spec(run, external_ok=True)
    cache = cache or AuditCache(run)
    findings = []
    for r in run.replicates() if replicates is None else replicates:
        lost = [t for _, t, _ in missing_checkpoints(run, spec, [r])]
        findings += audit_replicate(run, r, lost, cache, tolerance)
    if save:
        cache.save()
    return findings


def audit_replicate(
    run: RunDir, r: int, lost: list[int], cache: AuditCache, tolerance: float = DISTANCE_TOLERANCE
) -> list[Finding]:
    """The findings of one replicate; `lost`: the kept steps it has no file for
    (sweep.run.missing_checkpoints, the one place that computes them)."""
    saved = run.saved_steps(r)
    last = final_step(run, r, saved)
    findings = []
    if lost:
        shown = ", ".join(map(str, lost[:12])) + (f" and {len(lost) - 12} more" if len(lost) > 12 else "")
        message = (
            f"replicate {r} has no checkpoint at kept t = {shown} ({run.checkpoint_dir(r)}): "
            "those paths cannot be swept"
        )
        findings.append(Finding("missing", r, tuple(lost), (run.checkpoint_dir(r),), message))
    final = _final(run, r, last, saved, cache)
    recent, kept, previous = RecentStates(), [], None
    for t in saved:  # in t order, each state loaded once for its facts and its lineage
        k = file_facts(Kept(t, run.checkpoint(r, t)), final, cache, recent.load)
        if not k.error and not k.nonfinite:
            k.previous, k.lineage = previous, pair_lineage(previous, k, cache, recent.load)
            previous = k
        kept.append(k)
    findings += [
        Finding("unreadable", r, (k.t,), (k.path,), f"replicate {r}: {k.error}") for k in kept if k.error
    ]
    readable = [k for k in kept if not k.error]
    findings += duplicate_findings(run, r, readable)
    findings += architecture_findings(run, r, readable, last)
    findings += [
        Finding("nonfinite", r, (k.t,), (k.path,), f"replicate {r}: {_name(run, k.path)}: {k.nonfinite}")
        for k in readable
        if k.nonfinite
    ]
    measured = [k for k in readable if k.distance is not None and not k.nonfinite]
    findings += distance_findings(run, r, measured, tolerance)
    return findings + lineage_findings(run, r, kept)


class FinalState:
    """The final state's digest (from the cache where it holds the file) and its weight
    vector, loaded only when a distance is not cached."""

    def __init__(self, path: Path, digest: str, vector: torch.Tensor | None = None):
        self.path, self.digest, self._vector, self._loaded = path, digest, vector, vector is not None

    @property
    def vector(self) -> torch.Tensor | None:
        """None where the final state holds no float weights (no distance is measured then)."""
        if not self._loaded:
            self._loaded = True
            with contextlib.suppress(LinpathError):
                self._vector = weight_vector(load_state_dict(self.path))
        return self._vector


def _final(run: RunDir, r: int, last: int | None, saved: list[int], cache: AuditCache) -> FinalState | None:
    """The final state, or None where it is absent, unreadable or holds no float weights."""
    if last is None or last not in saved:
        return None
    path = run.checkpoint(r, last)
    entry = cache.get(path)
    if entry is not None and entry.get("digest"):
        return FinalState(path, entry["digest"])
    try:
        state = load_state_dict(path)
    except LinpathError:
        return None
    final = FinalState(path, tensor_digest(state))
    with contextlib.suppress(LinpathError):
        final = FinalState(path, final.digest, weight_vector(state))
    return final


def _name(run: RunDir, path: Path) -> str:
    return path.relative_to(run.root).as_posix()


def _names(run: RunDir, group: list[Kept]) -> str:
    names = [_name(run, k.path) for k in group[:SHOWN]]
    more = f" and {len(group) - SHOWN} more" if len(group) > SHOWN else ""
    return ", ".join(names) + more


def duplicate_findings(run: RunDir, r: int, kept: list[Kept]) -> list[Finding]:
    """One finding per set of steps holding the same state: byte-identical files, or files
    saved differently whose tensors are all equal."""
    groups: dict[str, list[Kept]] = {}
    for k in kept:
        groups.setdefault(k.digest, []).append(k)
    out = []
    for group in (g for g in groups.values() if len(g) > 1):
        steps = tuple(k.t for k in group)
        same_bytes = len({k.sha256 for k in group}) == 1
        how = "are byte-identical" if same_bytes else "hold equal tensors, saved as different files"
        out.append(
            Finding(
                "duplicate-file" if same_bytes else "equal-tensors",
                r,
                steps,
                tuple(k.path for k in group),
                f"replicate {r}: {_names(run, group)} {how}: one state kept under {len(group)} steps "
                f"(t = {', '.join(map(str, steps))}); a step with learning rate 0 leaves the weights unchanged, "
                "anything else is a wrong grid",
            )
        )
    return out


def architecture_findings(run: RunDir, r: int, kept: list[Kept], last: int | None) -> list[Finding]:
    """States whose keys or shapes differ from the final state's (else from the most common)."""
    if not kept:
        return []
    ref = next((k for k in kept if k.t == last), None)
    if ref is None:
        common = max({k.signature for k in kept}, key=[k.signature for k in kept].count)
        ref = next(k for k in kept if k.signature == common)
    out = []
    for k in kept:
        if k.signature == ref.signature:
            continue
        try:  # this file first, as the message names it: "shape (this) vs (the reference's)"
            check_compatible(
                load_state_dict(k.path), load_state_dict(ref.path), _name(run, k.path), _name(run, ref.path)
            )
            detail = "the same keys and shapes in another order"
        except LinpathError as e:
            detail = str(e).split(": ", 1)[-1]
        out.append(
            Finding(
                "architecture",
                r,
                (k.t,),
                (k.path, ref.path),
                f"replicate {r}: {_name(run, k.path)} holds another architecture than "
                f"{_name(run, ref.path)}: {detail}",
            )
        )
    return out


def distance_findings(
    run: RunDir, r: int, kept: list[Kept], tolerance: float = DISTANCE_TOLERANCE
) -> list[Finding]:
    """Steps whose distance to the final state exceeds an earlier step's by more than
    tolerance·D (see DISTANCE_TOLERANCE), grouped under the earlier, nearer step."""
    kept = sorted(kept, key=lambda k: k.t)
    scale = max((k.distance for k in kept), default=0.0)
    if scale <= 0:
        return []
    later: dict[int, list[Kept]] = {}
    nearest = 0
    for j in range(1, len(kept)):
        if kept[j].distance - kept[nearest].distance > tolerance * scale:
            later.setdefault(nearest, []).append(kept[j])
        if kept[j].distance < kept[nearest].distance:
            nearest = j
    out = []
    for i, group in later.items():
        near = kept[i]
        far = max(k.distance for k in group)
        out.append(
            Finding(
                "distance",
                r,
                (near.t, *(k.t for k in group)),
                (near.path, *(k.path for k in group)),
                f"replicate {r}: the distance to the final state is not roughly decreasing in t: "
                f"{_name(run, near.path)} (t = {near.t}) lies {near.distance / scale:.3f}·D from it, nearer than "
                f"the later {_names(run, group)} (up to {far / scale:.3f}·D; D = {scale:.4g}, the largest "
                f"distance; tolerance {tolerance}·D): a state from another time?",
            )
        )
    return out


def pair_lineage(a: Kept | None, b: Kept, cache: AuditCache, load) -> Correlation | None:
    """The lineage correlation of two consecutive kept states (train/lineage.py), cached in the
    later file's entry under the earlier file's digest."""
    if a is None:
        return None
    known = (cache.get(b.path) or {}).setdefault("lineage", {})
    if a.digest not in known:
        try:
            c = weight_correlation(load(a.path), load(b.path))
        except LinpathError:
            c = None
        known[a.digest] = None if c is None else [c.value, c.noise]
    return None if known[a.digest] is None else Correlation(*known[a.digest])


def lineage_findings(run: RunDir, r: int, kept: list[Kept]) -> list[Finding]:
    """Consecutive kept states whose weight matrices correlate as independent trainings' do:
    two trainings in one replicate (see train/lineage.py)."""
    out = []
    for b in kept:
        a, c = b.previous, b.lineage
        if a is None or c is None or not c.independent:
            continue
        message = (
            f"replicate {r}: {_name(run, a.path)} and {_name(run, b.path)} are not states of one training: "
            f"their weight matrices correlate {c.value:.2f}, as two independent trainings' do (0 ± "
            f"{c.noise:.2f}; consecutive states of one training correlate far above): a training resumed "
            f"from another model between t = {a.t} and t = {b.t}?"
        )
        out.append(Finding("lineage", r, (a.t, b.t), (a.path, b.path), message))
    return out


def audit_notes(run_dir, findings: list[Finding] | None = None) -> list[str]:
    """report.md's notes: one per finding."""
    return [f.message for f in (audit_run(run_dir) if findings is None else findings)]


def duplicates_refusal(run: RunDir, findings: list[Finding]) -> str | None:
    """The sweep's one-line refusal when the audit found duplicate states (None: none)."""
    dup = [f for f in findings if f.kind in DUPLICATES]
    if not dup:
        return None
    more = f" (and {len(dup) - 1} more such finding{'s' * (len(dup) > 2)})" if len(dup) > 1 else ""
    return (
        f"the audit found duplicate states in {run.root}: {dup[0].message}{more}; 'linpath audit "
        f"{run.root}' lists every finding; pass --allow-duplicates to sweep anyway"
    )
