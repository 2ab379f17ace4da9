"""`linpath import DIR [DIR ...] --pattern 'step-{t}.pt'`: folders of checkpoints, one per
replicate, as a linpath run folder (an external run, config/external.py).

The pattern names the step t of each file or folder, matched against paths relative to DIR:
a template holding {t} (digits) where * stands for any characters within one name
('step-{t}.pt', 'epoch=*-step={t}.ckpt', 'ckpt/{t}/model.pt'), or a regular expression with a
group (?P<t>...). Without --pattern, Hugging Face Trainer folders checkpoint-<t>/ are read,
each holding model.safetensors or pytorch_model.bin. Every file is loaded weights-only (a
safetensors file, or a torch.save pickle of tensors; a wrapper such as Lightning's .ckpt
"state_dict" is found as `linpath path` finds it, or named with --key) and its state dict is
copied as replicate-<r>/checkpoints/iter-<t>.pt: the source folders are only read, never moved
or linked (a link would change with them). The import is written to a temporary folder and
renamed into place, so a refused import (no match, two files for one step, a file that is not
a checkpoint) leaves nothing behind, and one killed leaves only its temporary folder, which the
next import into the same folder removes (io/scratch.py); an import that exists is reused. As openlth.py does for
OpenLTH folders, the result sweeps and reports like any run, given --model and --data.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from linpath.config.external import ExternalSpec
from linpath.config.spec import write_spec
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.jsonfile import read_json
from linpath.io.rundir import RunDir
from linpath.io.scratch import publish, scratch_folder
from linpath.io.tensors import load_state_dict, save_tensors

HF_PATTERN = "checkpoint-{t}"
# the run folders imports make (here and in openlth.py): a killed import's scratch folder is removed
IMPORT_KINDS = ("import-", "openlth-")
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def compile_pattern(pattern: str) -> re.Pattern:
    """A template with {t} or a regular expression with (?P<t>...), as a compiled full-match regex."""
    if "(?P<t>" in pattern:
        try:
            return re.compile(pattern)
        except re.error as e:
            raise LinpathError(f"--pattern {pattern!r} is not a regular expression: {e}") from None
    if pattern.count("{t}") != 1:
        raise LinpathError(
            f"--pattern {pattern!r} must hold {{t}} once (e.g. 'step-{{t}}.pt', 'epoch=*-step={{t}}.ckpt') "
            "or a regular expression with a group (?P<t>...)"
        )
    literal = [re.escape(part).replace(r"\*", "[^/]*") for part in pattern.split("{t}")]
    return re.compile(r"(?P<t>\d+)".join(literal))


def weights_file(match: Path) -> Path:
    """The file holding the weights: the match itself, or a Hugging Face checkpoint folder's."""
    if match.is_file():
        return match
    if not match.is_dir():
        raise LinpathError(f"{match} is neither a file nor a folder (a pipe, a socket or a broken link?)")
    for name in HF_WEIGHTS:
        if (match / name).is_file():
            return match / name
    if any(match.glob("*.index.json")):
        raise LinpathError(
            f"{match} holds a sharded checkpoint (an .index.json): linpath imports unsharded ones"
        )
    raise LinpathError(f"{match} is a folder holding neither {' nor '.join(HF_WEIGHTS)}")


def find_checkpoints(folder: Path, pattern: str) -> dict[int, Path]:
    """{step: weights file} of one folder; one line for no match or two matches of one step."""
    if not folder.is_dir():
        raise LinpathError(f"no folder at {folder}")
    regex = compile_pattern(pattern)
    found: dict[int, Path] = {}
    for path in sorted(folder.rglob("*")):
        m = regex.fullmatch(path.relative_to(folder).as_posix())
        if m is None:
            continue
        try:
            t = int(m.group("t"))
        except (IndexError, ValueError):
            raise LinpathError(
                f"--pattern {pattern!r}: its step group matched {m.group(0)!r}, not a number"
            ) from None
        if t in found:
            raise LinpathError(
                f"two checkpoints for step {t} in {folder}: {found[t].name} and {path.name}; narrow --pattern"
            )
        found[t] = path
    if not found:
        shown = ", ".join(sorted(p.name for p in folder.iterdir())[:5]) or "nothing"
        raise LinpathError(f"no file or folder in {folder} matches --pattern {pattern!r} (it holds {shown})")
    return {t: weights_file(found[t]) for t in sorted(found)}


def model_class(files: dict[int, Path]) -> str:
    """The class a Hugging Face checkpoint names (config.json's architectures), else ''."""
    config = next(iter(files.values())).parent / "config.json"
    try:
        names = read_json(config, dict).get("architectures") or [""]
        return str(names[0])
    except (LinpathError, LookupError, TypeError):
        return ""


def import_spec(sources: list[Path], found: list[dict[int, Path]], pattern: str) -> ExternalSpec:
    """The external spec of the import: every step of every folder; all must end at one step."""
    finals = {max(files) for files in found}
    if len(finals) > 1:
        raise LinpathError(
            f"the folders end at different steps ({', '.join(str(max(f)) for f in found)}): "
            "each replicate needs its final state at the same step; import them separately"
        )
    total = finals.pop()
    if total <= 0:
        raise LinpathError(f"{sources[0]} holds only a checkpoint at step 0: a path needs a final state")
    hparams = {"imported_from": [str(s.resolve()) for s in sources], "pattern": pattern}
    steps = tuple(sorted(set().union(*found)))
    return ExternalSpec(model_class(found[0]), hparams, total, steps, len(sources), "import").validate()


def import_folders(
    sources: list[str | os.PathLike], out: str | os.PathLike = "runs", pattern: str | None = None, key=None
) -> tuple[RunDir, list[str]]:
    """Import checkpoint folders (one per replicate); returns the run folder and notes."""
    sources = [Path(s) for s in sources]
    twice = next(
        (s for i, s in enumerate(sources) if s.resolve() in {p.resolve() for p in sources[:i]}), None
    )
    if twice is not None:
        raise LinpathError(
            f"{twice} is named twice: each folder is one replicate, and one training given twice would "
            "count as two replicates"
        )
    pattern = pattern or HF_PATTERN
    found = [find_checkpoints(s, pattern) for s in sources]
    spec = import_spec(sources, found, pattern)
    slug = re.sub(r"[^A-Za-z0-9._]+", "_", sources[0].resolve().name).strip("_") or "checkpoints"
    run = RunDir(Path(out) / f"import-{slug}-{spec.hash}")
    notes = [] if 0 in spec.kept_steps else [f"no state at t = 0: paths start at t = {spec.kept_steps[0]}"]
    if run.spec_path.is_file():
        return run, [f"already imported: {run.root} (remove it to import again)"]
    if run.root.exists():
        raise LinpathError(f"{run.root} exists and is not a finished import; move it away and import again")
    with scratch_folder(run.root, IMPORT_KINDS) as scratch:
        _write(RunDir(scratch), spec, sources, found, key)
        if not publish(scratch, run.root):
            return run, [f"already imported: {run.root} (by another process, meanwhile)"]
    return run, notes


def _write(run: RunDir, spec: ExternalSpec, sources: list[Path], found: list[dict[int, Path]], key) -> None:
    write_spec(run, spec)
    record = {"pattern": spec.hparams["pattern"], "replicates": {}}
    for r, (source, files) in enumerate(zip(sources, found)):
        for t, path in files.items():
            save_tensors(run.checkpoint(r, t), load_state_dict(path, key))
        atomic_write_text(run.done_marker(r), f"{spec.total_steps}\n")
        record["replicates"][str(r)] = {
            "folder": str(source.resolve()),
            "files": {str(t): str(p.relative_to(source)) for t, p in files.items()},
        }
    atomic_write_text(run.import_record, json.dumps(record, indent=2) + "\n")
