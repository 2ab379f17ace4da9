"""Specifications of a run, the stable hash that names run folders, and spec.json.

A spec is every hyperparameter that decides what a replicate's training computes. Its hash
(over everything but the replicate count) names the run folder, so that the same settings
always land in the same folder and are reused, and different settings never collide. The
replicate count is left out of the hash on purpose: replicate r is determined by `seed + r`
alone, so asking for more replicates later extends a run instead of starting a new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import linpath.models as models
from linpath.config.external import ExternalSpec, needs_model_and_data
from linpath.config.steps import Step, parse_step_list
from linpath.data import DATASETS
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.jsonfile import read_json
from linpath.io.rundir import RunDir
from linpath.models import MODELS
from linpath.runtime.device import check_precision
from linpath.runtime.seeds import derived_seed
from linpath.runtime.versions import versions

if TYPE_CHECKING:
    import torch


def _help(text: str, **kw):
    return field(metadata={"help": text}, **kw)


@dataclass(frozen=True)
class DataSpec:
    dataset: str = _help("data set: mnist, cifar10, imagenet", default="mnist")
    batch_size: int = _help("training batch size (global, across all ranks)", default=128)
    augment: bool = _help(
        "training augmentation (CIFAR: crop+flip; ImageNet: resized crop+flip)", default=False
    )
    image_size: int = _help("ImageNet pipeline: crop size (224; smaller for small images)", default=0)


@dataclass(frozen=True)
class ModelSpec:
    model: str = _help("model name, e.g. mnist_lenet_300_100", default="mnist_lenet_300_100")
    init: str = _help("weight initializer for conv/linear layers", default="kaiming_normal")
    bn_init: str = _help("BatchNorm weight initializer (uniform: U[0,1), as OpenLTH)", default="uniform")


@dataclass(frozen=True)
class TrainSpec:
    optimizer: str = _help("optimizer: sgd", default="sgd")
    lr: float = _help("learning rate", default=0.1)
    momentum: float = _help("SGD momentum", default=0.0)
    weight_decay: float = _help("L2 weight decay", default=0.0)
    training_steps: str = _help("training length, e.g. 40ep, 18760it, 2ep100it", default="40ep")
    milestone_steps: str = _help("steps where lr is multiplied by gamma, e.g. 80ep,120ep", default="")
    gamma: float = _help("lr factor at each milestone", default=0.1)
    warmup_steps: str = _help("linear lr warm-up from 0 over this many steps, e.g. 5ep", default="")
    seed: int = _help("seed of replicate 0; replicate r uses seed + r", default=0)
    precision: str = _help("training arithmetic: fp32 or bf16 (autocast)", default="fp32")
    keep_steps: str = _help(
        "more steps to keep checkpoints at, besides the paper's schedule, e.g. 100,2ep,3ep50it", default=""
    )


# Fields added after runs were made: left out of the hash while empty, so that the specs that
# leave them empty keep their hashes and so their run folders.
LATER_FIELDS = {"train": ("keep_steps",)}


@dataclass(frozen=True)
class Spec:
    preset: str
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    replicates: int = 3

    def validate(self) -> Spec:
        d, m, t = self.data, self.model, self.train
        _check_types(self)
        if d.dataset not in DATASETS:
            raise LinpathError(f"unknown dataset {d.dataset!r} (known: {', '.join(sorted(DATASETS))})")
        if m.model not in MODELS:
            raise LinpathError(f"unknown model {m.model!r} (known: {', '.join(sorted(MODELS))})")
        _positive("batch-size", d.batch_size)
        _positive("replicates", self.replicates)
        if d.image_size < 0:
            raise LinpathError(f"--image-size must be >= 0, got {d.image_size}")
        for name, value in (("lr", t.lr), ("weight-decay", t.weight_decay)):
            if not value >= 0 or value == float("inf"):
                raise LinpathError(f"--{name} must be a finite number >= 0, got {value}")
        if not 0 <= t.momentum < 1:
            raise LinpathError(f"--momentum must be in [0, 1), got {t.momentum}")
        if not t.gamma > 0:
            raise LinpathError(f"--gamma must be > 0, got {t.gamma}")
        if t.seed < 0:
            raise LinpathError(f"--seed must be >= 0, got {t.seed}")
        if t.optimizer != "sgd":
            raise LinpathError(f"unknown optimizer {t.optimizer!r} (known: sgd)")
        check_precision(t.precision)
        if m.init not in ("kaiming_normal",):
            raise LinpathError(f"unknown init {m.init!r} (known: kaiming_normal)")
        if m.bn_init not in ("uniform", "ones"):
            raise LinpathError(f"unknown bn-init {m.bn_init!r} (known: uniform, ones)")
        Step.parse(t.training_steps)
        parse_step_list(t.milestone_steps)
        if t.warmup_steps:
            Step.parse(t.warmup_steps)
        parse_step_list(t.keep_steps)
        return self

    def seeds(self) -> list[int]:
        return [self.train.seed + r for r in range(self.replicates)]

    def hashed_part(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("replicates")
        for section, names in LATER_FIELDS.items():
            for name in names:
                if d[section][name] == "":
                    del d[section][name]
        return d

    @property
    def hash(self) -> str:
        text = json.dumps(self.hashed_part(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def run_name(self) -> str:
        return f"{self.preset}-{self.hash}"

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hash"] = self.hash
        d["seeds"] = self.seeds()
        return d

    @classmethod
    def from_json(cls, d: dict, where: str = "spec.json") -> Spec:
        try:
            spec = cls(
                preset=d["preset"],
                data=DataSpec(**d["data"]),
                model=ModelSpec(**d["model"]),
                train=TrainSpec(**d["train"]),
                replicates=d["replicates"],
            )
        except (KeyError, TypeError) as e:
            raise LinpathError(f"{where} is not a linpath spec ({type(e).__name__}: {e})") from None
        if "hash" in d and d["hash"] != spec.hash:
            raise LinpathError(
                f"{where} was edited: its settings hash to {spec.hash}, not the recorded {d['hash']};"
                " start a new run with command-line overrides instead of editing spec.json"
            )
        try:
            return spec.validate()
        except LinpathError as e:
            raise LinpathError(f"{where}: {e}") from None

    def with_overrides(self, overrides: dict) -> Spec:
        """Apply {field_name: value} overrides; names are the fields of any section."""
        sections = {"data": self.data, "model": self.model, "train": self.train}
        top = {}
        for name, value in overrides.items():
            if value is None:
                continue
            if name == "replicates":
                top["replicates"] = value
                continue
            for key, section in sections.items():
                if name in {f.name for f in fields(section)}:
                    sections[key] = dataclasses.replace(section, **{name: value})
                    break
            else:
                raise LinpathError(f"unknown setting {name!r}")
        return dataclasses.replace(self, **sections, **top).validate()


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise LinpathError(f"--{name} must be a positive integer, got {value}")


def _check_types(spec: Spec) -> None:
    """Every field has its declared type (int, float, str, bool): a clear error, not a TypeError later."""
    for section in (spec.data, spec.model, spec.train):
        hints = typing.get_type_hints(type(section))
        for f in fields(section):
            value, kind = getattr(section, f.name), hints[f.name]
            ok = (
                isinstance(value, bool)
                if kind is bool
                else isinstance(value, (int, float)) and not isinstance(value, bool)
                if kind is float
                else isinstance(value, int) and not isinstance(value, bool)
                if kind is int
                else isinstance(value, kind)
            )
            if not ok:
                raise LinpathError(
                    f"--{f.name.replace('_', '-')} must be of type {kind.__name__}, got {value!r}"
                )
    if isinstance(spec.replicates, bool) or not isinstance(spec.replicates, int):
        raise LinpathError(f"--replicates must be a positive integer, got {spec.replicates!r}")


def override_fields() -> list[dataclasses.Field]:
    """Every field a user may override from the command line, across sections."""
    return [f for section in (DataSpec, ModelSpec, TrainSpec) for f in fields(section)]


def build_model(spec: Spec, num_classes: int, seed: int) -> torch.nn.Module:
    """The spec's model, initialized as a pure function of `seed`."""
    return models.build(
        spec.model.model, num_classes, derived_seed(seed, "init"), spec.model.init, spec.model.bn_init
    )


def write_spec(run: RunDir, spec: Spec) -> None:
    d = spec.to_json()
    d["versions"] = versions()
    atomic_write_text(run.spec_path, json.dumps(d, indent=2) + "\n")


def read_spec(run: RunDir, external_ok: bool = False) -> Spec | ExternalSpec:
    """The run folder's spec, checked against its recorded hash and the folder's name. An
    external run's (config/external.py) is returned only to callers that handle it
    (`external_ok`); the others get one line saying what it needs (--model and --data)."""
    if not run.spec_path.is_file():
        raise LinpathError(f"{run.root} is not a linpath run folder (no spec.json)")
    d = read_json(run.spec_path)
    if not isinstance(d, dict):
        raise LinpathError(f"{run.spec_path} is not a linpath spec (not a JSON object)")
    if "external" in d:  # kept from the researcher's own training
        spec = ExternalSpec.from_json(d, str(run.spec_path))
        if not external_ok:
            raise LinpathError(needs_model_and_data(run.root, spec))
    else:
        spec = Spec.from_json(d, str(run.spec_path))
    suffix = run.root.name.rsplit("-", 1)[-1]
    if len(suffix) == 10 and all(c in "0123456789abcdef" for c in suffix) and suffix != spec.hash:
        raise LinpathError(
            f"{run.spec_path} does not match its folder: settings hash to {spec.hash}, folder says {suffix}"
        )
    return spec
