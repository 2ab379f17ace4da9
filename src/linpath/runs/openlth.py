"""Importing an OpenLTH run folder (facebookresearch/open_lth) as a linpath run folder.

OpenLTH keeps one folder per replicate, <root>/train_<hash>/replicate_<N>/main/ (lottery runs:
lottery_<hash>/replicate_<N>/level_<L>/main/, of which level_0 is the dense training), with
    hparams.log              sections "Dataset Hyperparameters", "Model Hyperparameters",
                             "Training Hyperparameters", ..., one "    * name => value" line per
                             field that is required or set (unset fields are left out)
    model_ep<E>_it<I>.pth    model.state_dict() at E epochs plus I iterations
    logger                   "name,iteration,value" lines (test_accuracy, test_loss, train_loss, ...)
The import writes <out>/openlth-<preset>-<hash>/ in linpath's layout: spec.json (the hparams
that linpath represents, steps converted to absolute iterations), replicate-<r>/checkpoints/
iter-<t>.pt with t = E·ipe + I (ipe = OpenLTH's ceil(training examples / batch size)), the
state dicts' keys mapped onto linpath's model, train_log.csv from the logger, a DONE marker
where the final checkpoint exists, and openlth.json (the source, raw hparams, what was not
represented). The folder then sweeps and reports like any run.

Key mapping: exact names first (linpath's LeNet, CIFAR ResNet and VGG use OpenLTH's module
names); else after stripping a wrapper prefix ("model.", "module."); else position by position
with equal shapes and equal tensor kinds (weight, bias, running_mean, ...), which maps OpenLTH's
torchvision-based ImageNet ResNet (model.conv1, model.layer1.0.downsample.0, ...) onto ours.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

import linpath.models as models
from linpath.config.presets import PRESETS
from linpath.config.spec import DataSpec, ModelSpec, Spec, TrainSpec, write_spec
from linpath.config.steps import Step, parse_step_list
from linpath.data import DATASETS
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.scratch import publish, scratch_folder
from linpath.io.tables import write_csv
from linpath.io.tensors import load_state_dict, save_tensors
from linpath.runs.import_dir import IMPORT_KINDS
from linpath.train.log import LOG_COLUMNS

MODEL_FILE = re.compile(r"^model_ep(\d+)_it(\d+)\.pth$")
_SECTION = re.compile(r"^(\w+) Hyperparameters\s*$")
_ITEM = re.compile(r"^\s+\*\s+(\w+)\s+=>\s?(.*?)\s*$")


def parse_hparams(text: str, where: str = "hparams.log") -> dict[str, dict[str, str]]:
    """{"dataset": {"dataset_name": "mnist", ...}, "model": {...}, "training": {...}, ...}."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if m := _SECTION.match(line):
            current = sections.setdefault(m.group(1).lower(), {})
        elif (m := _ITEM.match(line)) and current is not None:
            current[m.group(1)] = m.group(2)
        else:
            raise LinpathError(f"{where} line {number} is not OpenLTH's hparams format: {line.strip()!r}")
    for section, required in (
        ("dataset", "dataset_name"),
        ("model", "model_name"),
        ("training", "training_steps"),
    ):
        if required not in sections.get(section, {}):
            raise LinpathError(f"{where} has no {required} (in its {section.title()} Hyperparameters)")
    return sections


def _number(h: dict, key: str, kind, default, where: str):
    if key not in h or h[key] in ("None", ""):
        return default
    try:
        return kind(h[key])
    except ValueError:
        raise LinpathError(f"{where}: {key} => {h[key]!r} is not a {kind.__name__}") from None


def iterations_per_epoch(hparams: dict, override: int | None = None) -> int:
    """OpenLTH's ceil(training examples (x subsample_fraction) / batch size)."""
    if override is not None:
        if override <= 0:
            raise LinpathError(f"--iterations-per-epoch must be positive, got {override}")
        return override
    d = hparams["dataset"]
    name = d["dataset_name"]
    if name not in DATASETS:
        raise LinpathError(f"unknown OpenLTH dataset {name!r}; give --iterations-per-epoch")
    batch = _number(d, "batch_size", int, None, "hparams.log")
    if not batch:
        raise LinpathError("hparams.log has no batch_size")
    fraction = _number(d, "subsample_fraction", float, 1.0, "hparams.log")
    return math.ceil(DATASETS[name].num_train_examples * fraction / batch)


UNREPRESENTED = (  # OpenLTH hparams linpath's spec has no field for: noted when set
    "nesterov_momentum",
    "apex_fp16",
    "random_labels_fraction",
    "subsample_fraction",
    "blur_factor",
    "unsupervised_labels",
    "transformation_seed",
    "batchnorm_frozen",
    "output_frozen",
    "others_frozen",
    "subset_start",
    "subset_end",
    "data_order_seed",
)


def spec_from_hparams(
    hparams: dict, ipe: int, replicates: int, where: str = "hparams.log"
) -> tuple[Spec, list[str]]:
    """The linpath spec matching OpenLTH's hparams as far as linpath represents them, and
    notes on what it does not (recorded in openlth.json and printed)."""
    d, m, t = hparams["dataset"], hparams["model"], hparams["training"]
    dataset, model_name = d["dataset_name"], m["model_name"]
    if model_name not in models.MODELS:
        raise LinpathError(
            f"{where}: model {model_name!r} has no linpath counterpart (known: {', '.join(sorted(models.MODELS))})"
        )
    model, notes = _model_spec(m)
    if t.get("optimizer_name", "sgd") != "sgd":
        notes.append(
            f"optimizer {t['optimizer_name']} (spec.json says sgd; only sgd is retrained by linpath)"
        )
    for key in UNREPRESENTED:
        for section in (d, m, t):
            if key in section and section[key] not in ("None", "False", "0", "0.0"):
                notes.append(f"{key} {section[key]} (not represented in spec.json)")
    spec = Spec(
        preset=model_name if model_name in PRESETS else "openlth",
        data=DataSpec(
            dataset=dataset,
            batch_size=_number(d, "batch_size", int, 128, where),
            # OpenLTH augments unless do_not_augment; its MNIST has no augmentation
            augment=dataset != "mnist" and d.get("do_not_augment", "False") != "True",
            image_size=224 if dataset == "imagenet" else 0,
        ),
        model=model,
        train=_train_spec(t, ipe, where),
        replicates=replicates,
    )
    return spec.validate(), notes


def _model_spec(m: dict) -> tuple[ModelSpec, list[str]]:
    """OpenLTH's model hparams as linpath's, and notes on the initializers it does not have."""
    notes = []
    init = m.get("model_init", "kaiming_normal")
    if init != "kaiming_normal":
        notes.append(f"model_init {init} (spec.json says kaiming_normal; it only matters for retraining)")
    bn_init = {"uniform": "uniform", "fixed": "ones"}.get(m.get("batchnorm_init", "uniform"))
    if bn_init is None:
        notes.append(f"batchnorm_init {m['batchnorm_init']} (spec.json says uniform)")
    return ModelSpec(model=m["model_name"], init="kaiming_normal", bn_init=bn_init or "uniform"), notes


def _train_spec(t: dict, ipe: int, where: str) -> TrainSpec:
    """OpenLTH's training hparams in iterations (its epochs converted with `ipe`)."""

    def iterations(text: str | None) -> str:
        return f"{Step.parse(text).to_iterations(ipe)}it" if text else ""

    milestones = t.get("milestone_steps")
    return TrainSpec(
        optimizer="sgd",
        lr=_number(t, "lr", float, 0.1, where),
        momentum=_number(t, "momentum", float, 0.0, where),
        weight_decay=_number(t, "weight_decay", float, 0.0, where),
        training_steps=iterations(t["training_steps"]),
        milestone_steps=",".join(f"{s.to_iterations(ipe)}it" for s in parse_step_list(milestones))
        if milestones and milestones != "None"
        else "",
        gamma=_number(t, "gamma", float, 0.1, where),
        warmup_steps=iterations(t.get("warmup_steps")),
        seed=0,
    )


def find_replicate_folders(root: Path) -> list[Path]:
    """Folders under `root` (or `root` itself) with hparams.log and model files, in replicate
    order; for lottery runs only level_0 (the dense network) and no branches."""
    root = Path(root)
    if not root.is_dir():
        raise LinpathError(f"no OpenLTH run folder at {root}")
    found = []
    for log in sorted(
        [root / "hparams.log"] if (root / "hparams.log").is_file() else root.rglob("hparams.log")
    ):
        folder = log.parent
        parts = folder.relative_to(root).parts if folder != root else ()
        if any(p.startswith("level_") and p != "level_0" for p in parts) or any("branch" in p for p in parts):
            continue
        if any(MODEL_FILE.match(p.name) for p in folder.iterdir()):
            found.append(folder)
    if not found:
        raise LinpathError(
            f"{root} holds no OpenLTH run (no folder with hparams.log and model_ep<E>_it<I>.pth files)"
        )

    def order(folder: Path):
        m = re.search(r"replicate_(\d+)", str(folder.relative_to(root)) if folder != root else "")
        return (int(m.group(1)) if m else -1, str(folder))

    return sorted(found, key=order)


def map_state(
    theirs: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], where: str
) -> dict[str, torch.Tensor]:
    """OpenLTH's state dict under linpath's keys (see the module docstring)."""
    candidates = [theirs] + [
        {k[len(p) :]: v for k, v in theirs.items()}
        for p in ("model.", "module.")
        if all(k.startswith(p) for k in theirs)
    ]
    for named in candidates:
        if set(named) == set(ours) and all(named[k].shape == ours[k].shape for k in ours):
            return {k: named[k] for k in ours}
    theirs_items, ours_items = list(theirs.items()), list(ours.items())
    for (k0, v0), (k1, v1) in zip(theirs_items, ours_items):
        if v0.shape != v1.shape or k0.rsplit(".", 1)[-1] != k1.rsplit(".", 1)[-1]:
            raise LinpathError(
                f"{where}: cannot map OpenLTH's {k0!r} {tuple(v0.shape)} onto linpath's "
                f"{k1!r} {tuple(v1.shape)} (the architectures differ)"
            )
    if len(theirs_items) != len(ours_items):
        extra = (
            theirs_items[len(ours_items)][0] + " (only in the checkpoint)"
            if len(theirs_items) > len(ours_items)
            else ours_items[len(theirs_items)][0] + " (only in linpath's model)"
        )
        raise LinpathError(
            f"{where} has {len(theirs_items)} tensors, linpath's model {len(ours_items)}; first unmatched: {extra}"
        )
    return {k1: v0 for (_, v0), (k1, _) in zip(theirs_items, ours_items)}


def model_files(folder: Path, ipe: int) -> dict[int, Path]:
    """{absolute iteration: file} of a replicate folder."""
    out = {}
    for p in folder.iterdir():
        if m := MODEL_FILE.match(p.name):
            ep, it = int(m.group(1)), int(m.group(2))
            if it >= ipe:
                raise LinpathError(
                    f"{p} is {it} iterations into an epoch of {ipe}: "
                    "the iterations per epoch are wrong (give --iterations-per-epoch)"
                )
            out[ep * ipe + it] = p
    return dict(sorted(out.items()))


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LinpathError(
            f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); is it OpenLTH's file?"
        ) from None
    except OSError as e:
        raise LinpathError(f"cannot read {path}: {e.strerror or e}") from None


def _log_rows(folder: Path, ipe: int) -> list[list]:
    """train_log.csv rows from OpenLTH's logger (one per evaluated iteration)."""
    path = folder / "logger"
    if not path.is_file():
        return []
    values: dict[int, dict[str, str]] = {}
    for line in _text(path).splitlines():
        parts = line.strip().split(",")
        if len(parts) == 3 and parts[1].isdigit():
            values.setdefault(int(parts[1]), {})[parts[0]] = parts[2]
    return [
        [it, it / ipe, "", v.get("train_loss", ""), v.get("test_loss", ""), v["test_accuracy"], ""]
        for it, v in sorted(values.items())
        if "test_accuracy" in v
    ]


def import_run(
    source: str | Path, out: str | Path = "runs", iterations_per_epoch_override: int | None = None
) -> tuple[RunDir, list[str]]:
    """Import an OpenLTH run folder; returns the linpath run folder and notes on what the spec
    does not represent or what is missing (e.g. a replicate without a final checkpoint)."""
    source = Path(source)
    folders = find_replicate_folders(source)
    parsed = [parse_hparams(_text(f / "hparams.log"), str(f / "hparams.log")) for f in folders]
    for folder, h in zip(folders[1:], parsed[1:]):
        if h != parsed[0]:
            raise LinpathError(
                f"{folder} and {folders[0]} hold runs with different hparams; import them separately"
            )
    hparams = parsed[0]
    ipe = iterations_per_epoch(hparams, iterations_per_epoch_override)
    spec, notes = spec_from_hparams(hparams, ipe, len(folders), str(folders[0] / "hparams.log"))
    total = Step.parse(spec.train.training_steps).to_iterations(ipe)
    num_classes = DATASETS[spec.data.dataset].num_classes if spec.data.dataset in DATASETS else 10
    ours = models.build(spec.model.model, num_classes, seed=0).state_dict()
    if total <= 0:
        raise LinpathError(f"{folders[0] / 'hparams.log'}: training_steps is zero iterations")
    # every check before the first file is written: a refused import leaves no folder behind
    files_of = [model_files(folder, ipe) for folder in folders]
    for files in files_of:
        for path in files.values():
            map_state(load_state_dict(path), ours, str(path))
    run = RunDir(Path(out) / f"openlth-{spec.run_name}")
    if run.root.exists():  # imported before: written again in place, under its lock
        _write_import(run, spec, source, folders, files_of, ours, total, ipe, hparams, notes)
        return run, notes
    with scratch_folder(run.root, IMPORT_KINDS) as scratch:  # a new one appears whole or not at all
        _write_import(RunDir(scratch), spec, source, folders, files_of, ours, total, ipe, hparams, notes)
        if not publish(scratch, run.root):
            notes.append(f"{run.root} was imported by another process meanwhile; that import is kept")
    return run, notes


def _write_import(run, spec, source, folders, files_of, ours, total, ipe, hparams, notes) -> None:
    with run.lock("import"):
        write_spec(run, spec)
        sources = {}
        for r, (folder, files) in enumerate(zip(folders, files_of)):
            for t, path in files.items():
                save_tensors(run.checkpoint(r, t), map_state(load_state_dict(path), ours, str(path)))
            write_csv(run.train_log(r), LOG_COLUMNS, _log_rows(folder, ipe))
            if total in files:
                atomic_write_text(run.done_marker(r), f"{total}\n")
            else:
                notes.append(
                    f"replicate {r} ({folder}) has no final checkpoint at iteration {total} "
                    f"(model_ep{total // ipe}_it{total % ipe}.pth); it cannot be swept"
                )
            sources[str(r)] = {"folder": str(folder.resolve()), "iterations": list(files)}
        info = {
            "source": str(source.resolve()),
            "iterations_per_epoch": ipe,
            "replicates": sources,
            "hparams": hparams,
            "notes": notes,
        }
        atomic_write_text(run.openlth_info, json.dumps(info, indent=2) + "\n")
