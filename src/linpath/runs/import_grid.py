"""`linpath import hf://ORG/NAME --revisions paper`: a checkpoint grid published as revisions, as
a run folder that references them.

    import_grid("hf://EleutherAI/pythia-70m", revisions="paper",
                replicate_pattern="hf://EleutherAI/pythia-70m-seed{r}", replicates=10)

The source is a Hub repository or a local folder of revisions (io/hub.py); each replicate r
of `replicate_pattern` ({r} replaced by 1, 2, ...; replicate 0 is the source itself, as
PolyPythias' seed 0 is the base model) is another. The selection (config/revisions.py: paper,
all or a list) is read against the steps published under any replicate, so a step one seed
lacks is that seed's missing revision. Nothing is downloaded but config.json and the index
(the shards' sha256 come from the Hub's LFS metadata; a local folder's files are read and
hashed): the run folder holds spec.json (an external run's, config/external.py), grid.json
(io/grid_record.py: revisions, commits, files and hashes) and a DONE mark per replicate, and
no weights unless `copy` (then replicate-<r>/revisions/step<t>/, checked against the hashes).
As import_dir.py does, the folder is written aside and renamed into place, so a refused
import leaves nothing behind, and an import that exists is reused.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from linpath.config.external import ExternalSpec
from linpath.config.revisions import Choice, choose, requested_steps, step_of, steps_by_name
from linpath.config.spec import write_spec
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.grid_record import GridRecord, ReplicateGrid, Revision, config_digest
from linpath.io.hf_folder import is_model_folder
from linpath.io.hub import HUB_SCHEME, local_file, open_source
from linpath.io.rundir import RunDir


def replicate_sources(source: str, pattern: str | None, replicates: int | None) -> list[str]:
    """The replicates' sources: `source`, then `pattern` with {r} = 1, 2, ...: `replicates` in
    all, or (local folders) as many as exist in a row."""
    if pattern is None:
        if replicates not in (None, 1):
            raise LinpathError(
                "replicates > 1 needs a replicate pattern (e.g. 'EleutherAI/pythia-70m-seed{r}')"
            )
        return [source]
    if pattern.count("{r}") != 1:
        raise LinpathError(
            f"--replicate-pattern {pattern!r} must hold {{r}} once (e.g. 'ORG/NAME-seed{{r}}')"
        )
    hub = source.startswith(HUB_SCHEME)
    if hub and not pattern.startswith(HUB_SCHEME):
        pattern = HUB_SCHEME + pattern
    if replicates is None:
        if hub:
            raise LinpathError(
                "with --replicate-pattern on the Hub, give --replicates N (seed 0 is the base model)"
            )
        replicates = 1
        while Path(pattern.replace("{r}", str(replicates))).is_dir():
            replicates += 1
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise LinpathError(f"--replicates must be a positive whole number, got {replicates!r}")
    return [source] + [pattern.replace("{r}", str(r)) for r in range(1, replicates)]


def _listing(source) -> tuple[dict[int, str], dict[str, str | None]]:
    """({step: revision name}, {revision name: commit}) of one source."""
    commits = source.revisions()
    by_step = steps_by_name(commits, source.name)
    if not by_step:
        shown = ", ".join(sorted(commits)[:5]) or "none"
        raise LinpathError(f"{source.name}: no revision names a step (revisions: {shown}; step1000 would)")
    return by_step, commits


def _final_step(choices: list[Choice], requested: list[int], names: list[str]) -> int:
    """The grid's last step, which every replicate must publish (its paths end there)."""
    final = max(requested)
    for choice, name in zip(choices, names):
        if final not in choice.revisions:
            raise LinpathError(
                f"{name} has no revision at the grid's last step {final}: each replicate needs its final "
                "state at the same step; import it separately, or name the steps with --revisions"
            )
    return final


def _revision(source, name: str, commit: str | None, configs: dict) -> Revision:
    """One revision's record: its files and hashes, its config (kept once per digest)."""
    files = tuple(source.files(name, commit))
    config = source.config(name, commit)
    digest = config_digest(config)
    configs.setdefault(digest, config)
    return Revision(name, commit, digest, files)


def grid_record(sources: list, selection: str, copy: bool) -> GridRecord:
    """The record of every replicate's chosen revisions (see the module's docstring)."""
    listings = [_listing(s) for s in sources]
    published = set().union(*(by_step for by_step, _ in listings))
    requested = requested_steps(selection, published)
    choices = [choose(by_step, requested) for by_step, _ in listings]
    names = [s.name for s in sources]
    if not any(c.revisions for c in choices):
        raise LinpathError(f"{names[0]}: none of the steps asked for ({selection}) is published")
    _final_step(choices, requested, names)
    configs: dict[str, dict] = {}
    replicates = {}
    for r, (source, choice, (_, commits)) in enumerate(zip(sources, choices, listings)):
        revisions = {t: _revision(source, n, commits[n], configs) for t, n in choice.revisions.items()}
        replicates[r] = ReplicateGrid(source.name, revisions, choice.missing)
    return GridRecord(sources[0].kind, selection, tuple(requested), replicates, configs, copy)


def grid_spec(record: GridRecord, sources: list[str]) -> ExternalSpec:
    """The run's spec: an external run kept by import, its steps those of any replicate."""
    final = max(record.requested)
    first = record.replicates[0].revisions[final]
    architectures = record.configs[first.config].get("architectures") or [""]
    steps = sorted(set().union(*(g.revisions for g in record.replicates.values())))
    hparams = {"grid": sources, "revisions": record.selection, "copied": record.copied}
    spec = ExternalSpec(str(architectures[0]), hparams, final, tuple(steps), len(record.replicates), "import")
    return spec.validate()


def is_grid_source(text: str) -> bool:
    """Whether `linpath import` is given a checkpoint grid: a Hub repository (hf://ORG/NAME) or
    a folder of revisions (subfolders named by step, each a model folder: step0/, step1000/)."""
    if str(text).startswith(HUB_SCHEME):
        return True
    folder = Path(text)
    subfolders = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    named = [p for p in subfolders if step_of(p.name) is not None]
    return bool(named) and len(named) == len(subfolders) and all(is_model_folder(p) for p in named)


def import_grid(
    source: str | os.PathLike,
    out: str | os.PathLike = "runs",
    revisions: str = "paper",
    replicate_pattern: str | None = None,
    replicates: int | None = None,
    copy: bool = False,
    cache_dir=None,
    token=None,
    trust_remote_code: bool = False,
) -> tuple[RunDir, list[str]]:
    """Import a checkpoint grid (see the module's docstring); returns the run folder and notes.
    `cache_dir`, `token`: the Hub's (default: huggingface_hub's own); `trust_remote_code` also
    fetches a repository's *.py (for a model whose code it holds: never by default)."""
    names = replicate_sources(str(source), replicate_pattern, replicates)
    sources = [open_source(n, cache_dir, token, trust_remote_code) for n in names]
    record = grid_record(sources, revisions, copy)
    spec = grid_spec(record, [s.name for s in sources])
    slug = re.sub(r"[^A-Za-z0-9._]+", "_", Path(sources[0].name).name).strip("_") or "grid"
    run = RunDir(Path(out) / f"grid-{slug}-{spec.hash}")
    if run.spec_path.is_file() and run.grid_record.is_file():
        return run, [f"already imported: {run.root} (remove it to import again)"]
    if run.root.exists():
        raise LinpathError(f"{run.root} exists and is not a finished import; move it away and import again")
    scratch = RunDir(run.root.with_name(f".{run.root.name}.{os.getpid()}.tmp"))
    try:
        if copy:
            record = _copy_weights(scratch, record, sources)
        write_spec(scratch, spec)
        record.write(scratch.grid_record)
        for r in record.replicates:
            atomic_write_text(scratch.done_marker(r), f"{spec.total_steps}\n")
        os.replace(scratch.root, run.root)
    finally:
        shutil.rmtree(scratch.root, ignore_errors=True)
    return run, _notes(record)


def _copy_weights(run: RunDir, record: GridRecord, sources: list) -> GridRecord:
    """Every revision's model files copied into the run, each checked against its sha256."""
    replicates = {}
    for r, grid in record.replicates.items():
        revisions = {}
        for t, rev in grid.revisions.items():
            folder, target = sources[r].folder(rev.name, rev.commit), run.revision_folder(r, t)
            target.mkdir(parents=True, exist_ok=True)
            copied = []
            for info in rev.files:
                shutil.copyfile(folder / info.name, target / info.name)
                copied.append(local_file(target / info.name))
                if copied[-1].sha256 != info.sha256:
                    raise LinpathError(f"{folder / info.name} changed while it was copied: import again")
            revisions[t] = Revision(rev.name, rev.commit, rev.config, tuple(copied))
        replicates[r] = ReplicateGrid(grid.source, revisions, grid.missing)
    return GridRecord(record.kind, record.selection, record.requested, replicates, record.configs, True)


def _notes(record: GridRecord) -> list[str]:
    notes = []
    for r, grid in record.replicates.items():
        if grid.missing:
            shown = ", ".join(map(str, grid.missing[:8])) + (" ..." if len(grid.missing) > 8 else "")
            notes.append(f"replicate {r} ({grid.source}) publishes no revision at step {shown}")
    if 0 not in record.requested:
        notes.append(f"no state at t = 0: paths start at t = {min(record.requested)}")
    return notes
