"""External runs: states kept from a researcher's own training (linpath.Keeper, the Lightning
and Hugging Face callbacks in linpath.integrations, `linpath import`), not by linpath's loop.

Their spec.json says so, and holds what linpath knows of such a training:

    {"preset": "external",
     "external": {"model_class": "mypackage.nets.MLP", "hparams": {"lr": 0.1, ...}},
     "total_steps": 3000, "kept_steps": [0, 1, 2, 4, ..., 2000, 3000],
     "replicates": 1, "kept_by": "keeper", "hash": "<10 hex digits>", "versions": {...}}

The hash covers the model class, the hyperparameters, the training length and the kept grid
(not the replicate count, as for presets: more replicates extend a run), so a Keeper resumes
only into the folder of the same spec, and `linpath import` names its folders by it. Since the
spec cannot build the model or load the data, the commands that need them take
`--model module:callable` and `--data`; read_spec refuses an external run elsewhere, in one line.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
from dataclasses import dataclass, field

from linpath.config.steps import MAX_ITERATIONS
from linpath.errors import LinpathError

EXTERNAL = "external"  # the preset name of every external run (no paper claims apply)
KEPT_BY = ("keeper", "lightning", "huggingface", "import")


@dataclass(frozen=True, eq=False)
class ExternalSpec:
    """What spec.json records of a training linpath did not run (see the module docstring)."""

    model_class: str
    hparams: dict = field(default_factory=dict)
    total_steps: int = 0
    kept_steps: tuple[int, ...] = ()
    replicates: int = 1
    kept_by: str = "keeper"
    preset: str = EXTERNAL

    def validate(self) -> ExternalSpec:
        if not isinstance(self.model_class, str):
            raise LinpathError(f"model_class must be a string, got {self.model_class!r}")
        if not isinstance(self.hparams, dict):
            raise LinpathError(f"hparams must be a dict, got {type(self.hparams).__name__}")
        total = self.total_steps
        if isinstance(total, bool) or not isinstance(total, int) or not 0 < total <= MAX_ITERATIONS:
            raise LinpathError(f"total_steps must be a whole number in 1..{MAX_ITERATIONS}, got {total!r}")
        steps = list(self.kept_steps)
        if any(isinstance(t, bool) or not isinstance(t, int) for t in steps) or steps != sorted(set(steps)):
            raise LinpathError(f"kept_steps must be ascending whole numbers, got {steps[:8]!r}")
        if not steps or steps[0] < 0 or steps[-1] != total:
            raise LinpathError(f"kept_steps must lie in 0..{total} and end at total_steps {total}")
        if isinstance(self.replicates, bool) or not isinstance(self.replicates, int) or self.replicates < 1:
            raise LinpathError(f"replicates must be a positive whole number, got {self.replicates!r}")
        if self.kept_by not in KEPT_BY:
            raise LinpathError(f"kept_by must be one of {', '.join(KEPT_BY)}, got {self.kept_by!r}")
        return self

    def hashed_part(self) -> dict:
        return {
            "external": {"model_class": self.model_class, "hparams": self.hparams},
            "total_steps": self.total_steps,
            "kept_steps": list(self.kept_steps),
        }

    @property
    def hash(self) -> str:
        text = json.dumps(self.hashed_part(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def run_name(self) -> str:
        return f"{self.preset}-{self.hash}"

    def seeds(self) -> list[int]:
        return []  # the researcher's code chose them; hparams may say

    def to_json(self) -> dict:
        return {
            "preset": self.preset,
            **self.hashed_part(),
            "replicates": self.replicates,
            "kept_by": self.kept_by,
            "hash": self.hash,
        }

    @classmethod
    def from_json(cls, d: dict, where: str = "spec.json") -> ExternalSpec:
        try:
            ext = d["external"]
            spec = cls(
                model_class=ext["model_class"],
                hparams=ext.get("hparams", {}),
                total_steps=d["total_steps"],
                kept_steps=tuple(d["kept_steps"]),
                replicates=d.get("replicates", 1),
                kept_by=d.get("kept_by", "keeper"),
            ).validate()
        except (KeyError, TypeError) as e:
            raise LinpathError(f"{where} is not an external run's spec ({type(e).__name__}: {e})") from None
        except LinpathError as e:
            raise LinpathError(f"{where}: {e}") from None
        if "hash" in d and d["hash"] != spec.hash:
            raise LinpathError(
                f"{where} was edited: its settings hash to {spec.hash}, not the recorded {d['hash']}"
            )
        return spec


def is_external(spec) -> bool:
    return isinstance(spec, ExternalSpec)


def needs_model_and_data(root, spec: ExternalSpec) -> str:
    """The one line said where a command needs the spec to build the model or load the data."""
    return (
        f"{root} is an external run (states kept from your own training of {spec.model_class or 'a model'}): "
        "its spec.json cannot build the model or load the data; 'linpath sweep', 'plane' and 'path' "
        "take --model module:callable and --data (a data set name or a .pt file of (inputs, targets)), "
        "'linpath report', 'trajectory', 'audit' and linpath.load need neither"
    )


def differences(a: ExternalSpec, b: ExternalSpec) -> str:
    """The first fields in which two external specs differ, in words (for one-line refusals)."""
    out = []
    if a.model_class != b.model_class:
        out.append(f"model {a.model_class} vs {b.model_class}")
    if a.total_steps != b.total_steps:
        out.append(f"total_steps {a.total_steps} vs {b.total_steps}")
    if a.kept_steps != b.kept_steps:
        out.append(f"kept steps ({len(a.kept_steps)} vs {len(b.kept_steps)} steps)")
    for key in sorted(set(a.hparams) | set(b.hparams)):
        if a.hparams.get(key) != b.hparams.get(key):
            out.append(f"hparams[{key!r}] {a.hparams.get(key)!r} vs {b.hparams.get(key)!r}")
    return ", ".join(out[:3]) or "their hashes"


def json_value(value, where: str = "hparams"):
    """`value` as plain JSON (for spec.json and a stable hash): containers recursively, paths,
    enums, dtypes and numpy scalars as their plain forms, non-finite floats as strings, anything
    else as its repr, or its type's name where the repr holds a memory address (which would
    change the hash from one run to the next)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): json_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [json_value(v, where) for v in items]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return json_value(value.item(), where)  # numpy and torch scalars
    if isinstance(value, enum.Enum):
        return json_value(value.value, where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    text = str(value) if type(value).__module__ == "torch" else repr(value)  # torch.float32, cpu
    return f"<{type(value).__qualname__}>" if " at 0x" in text else text
