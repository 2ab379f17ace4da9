"""A sweep setting: everything besides the checkpoints that decides a sweep's numbers.

This one dataclass is also the setting's command-line flags (add_flags, from_args: the same
names, defaults and parsing on every command that evaluates paths) and its key, the name of
the folder its item files live in (key, parse_key), so different settings never share
results. A new field is declared here once, with its flag and its part of the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass, field

from linpath.engine.choices import (
    BN_POLICIES,
    DEFAULT_BN_BATCHES,
    HOLDS,
    MIN_EXAMPLES,
    TASKS,
    check_bn_policy,
    check_hold,
    spec_terms,
)
from linpath.errors import LinpathError
from linpath.runtime.device import PRECISIONS, check_precision
from linpath.sweep.grids import Grid, grid_of_key, parse_grid

SPLITS = ("test", "train")
# the fields only the streamed evaluator takes (engine/streamed.py): language models, model
# folders, a stopping rule; commands that do not evaluate streamed leave their flags out
STREAM_FIELDS = ("task", "se_target", "min_examples")
OPTIONAL = ("se_target",)  # fields whose None is a value, not "the key holds only a digest"


def _flag(flag: str, help: str, **argparse_options) -> dict:
    """A field's command-line flag: its name, help and argparse options (type, choices, metavar,
    dest where the field's name would clash with another command-line option)."""
    return {"flag": flag, "help": help, **argparse_options}


def _dest(f: dataclasses.Field) -> str:
    return f.metadata.get("dest", f.name)


def _positive_int(value, flag: str, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise LinpathError(f"{flag} must be a positive integer, got {value}")


@dataclass(frozen=True)
class SweepSetting:
    """What decides the numbers of a sweep, besides the checkpoints."""

    split: str = field(
        default="test", metadata=_flag("--split", "evaluation split (default test)", choices=SPLITS)
    )
    bn: str = field(
        default="interpolate",
        metadata=_flag("--bn", "BatchNorm policy along the path (default interpolate)", choices=BN_POLICIES),
    )
    grid: Grid = field(  # its flags are --grid and the shorthand --points (_add_grid_flags)
        default_factory=Grid,
        metadata=_flag(
            "--grid",
            "grid of x, overrides --points: uniform:N[:A:B], dense-end:N[:A:B], dense-start:N[:A:B], "
            "adaptive[:N[:TOL[:A:B]]][:loss|error|both], values:X1,X2,... (see docs/engine.md)",
        ),
    )
    precision: str = field(
        default="fp32",
        # dest: training's precision is the spec's field `precision` (--train-precision)
        metadata=_flag(
            "--eval-precision",
            "evaluation arithmetic (default fp32)",
            choices=PRECISIONS,
            dest="eval_precision",
        ),
    )
    bn_batches: int = field(  # recompute only: training batches per point
        default=DEFAULT_BN_BATCHES,
        metadata=_flag(
            "--bn-batches",
            f"recompute policy: training batches per point (default {DEFAULT_BN_BATCHES})",
            type=int,
        ),
    )
    eval_examples: int = field(  # a class-stratified subset of the split; 0: all of it
        default=0,
        metadata=_flag(
            "--eval-examples",
            "evaluate a fixed class-stratified subset of N examples, with standard errors "
            "(default: the whole split)",
            type=int,
            flag_default=None,  # left out: the whole split; 0 given is refused (from_args)
        ),
    )
    params: str = field(  # a parameter subset (engine/params.py); "": every tensor moves
        default="",
        metadata=_flag(
            "--params",
            "move only these tensors, the others held (see --hold): glob patterns such as 'fc1.*' or "
            "'fc*.bias', 'weights', 'biases', 'bn' (BatchNorm parameters and statistics), 'layer:NAME'; "
            "comma-separated for a union. A setting of its own (default: every tensor moves)",
            metavar="SPEC",
        ),
    )
    hold: str = field(  # where the tensors outside `params` stay
        default="end",
        metadata=_flag(
            "--hold",
            "where the tensors outside --params stay: end (trained, the default, as Vlaar & Frankle) or start",
            choices=HOLDS,
        ),
    )

    task: str = field(
        default="classification",
        metadata=_flag(
            "--task",
            "classification (cross-entropy and error, the default) or causal-lm: mean next-token "
            "cross-entropy over the scored tokens, next-token error, perplexity and bits per byte",
            choices=TASKS,
        ),
    )
    se_target: float | None = field(  # a point stops once its loss's standard error is this small
        default=None,
        metadata=_flag(
            "--se-target",
            "stop each point once the loss's standard error is at most this (the examples read are "
            "recorded per point; shuffle the data once beforehand)",
            type=float,
        ),
    )
    min_examples: int = field(  # se_target: units read before a point may stop
        default=MIN_EXAMPLES,
        metadata=_flag(
            "--min-examples",
            f"--se-target: examples (sequences for causal-lm) read before a point may stop (default {MIN_EXAMPLES})",
            type=int,
        ),
    )

    def __post_init__(self):
        if self.split not in SPLITS:
            raise LinpathError(f"unknown split {self.split!r} (known: {', '.join(SPLITS)})")
        check_bn_policy(self.bn)
        check_precision(self.precision)
        _positive_int(self.bn_batches, "--bn-batches")
        _positive_int(self.eval_examples, "--eval-examples", allow_zero=True)
        check_hold(self.hold)
        if self.params:
            spec_terms(self.params)
        elif self.hold != "end":
            raise LinpathError("--hold only applies with --params (without it every tensor moves)")
        if self.task not in TASKS:
            raise LinpathError(f"--task {self.task!r}: known tasks are {', '.join(TASKS)}")
        if self.se_target is not None and not (
            isinstance(self.se_target, (int, float))
            and not isinstance(self.se_target, bool)
            and math.isfinite(self.se_target)
            and self.se_target > 0
        ):
            raise LinpathError(f"--se-target must be a positive number, got {self.se_target}")
        if (
            isinstance(self.min_examples, bool)
            or not isinstance(self.min_examples, int)
            or self.min_examples < 2
        ):
            raise LinpathError(f"--min-examples must be an integer of at least 2, got {self.min_examples}")

    def as_record(self) -> dict:
        """Every field by name, for a JSON record (the grid as its key): a new field is recorded
        wherever a setting is, with no list to extend."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {"grid": self.grid.key}

    @property
    def streamed(self) -> bool:
        """Whether the setting needs the streamed evaluator (a task or a stopping rule)."""
        return self.task != "classification" or self.se_target is not None

    def streamed_problem(self) -> str | None:
        """Why the streamed evaluator cannot evaluate this setting (None: it can)."""
        taken = {"bn": "interpolate", "eval_examples": 0, "params": ""}
        flags = {"bn": "--bn recompute", "eval_examples": "--eval-examples", "params": "--params"}
        for name, value in taken.items():
            if getattr(self, name) != value:
                return f"{flags[name]} is not supported with streamed evaluation"
        return None

    @property
    def key(self) -> str:
        """The sweep folder's name: everything that changes the numbers (parse_key reads it)."""
        return self.key_with_split(self.split)

    def key_with_split(self, split_name: str) -> str:
        """The key with another name in the split's place (`linpath path` on a data file: its name)."""
        bn = f"recompute{self.bn_batches}" if self.bn == "recompute" else self.bn
        subset = f"-n{self.eval_examples}" if self.eval_examples else ""
        params = f"-params[{params_slug(self.params)}]-hold{self.hold}" if self.params else ""
        return f"{split_name}-{bn}-{self.grid.key}-{self.precision}{subset}{params}{self._stream_key()}"

    def _stream_key(self) -> str:
        """The streamed fields' part of the key: empty at their defaults."""
        task = f"-{self.task}" if self.task != "classification" else ""
        if self.se_target is None:
            return task
        least = f"-min{self.min_examples}" if self.min_examples != MIN_EXAMPLES else ""
        return f"{task}-se{float(self.se_target)!r}{least}"

    @classmethod
    def add_flags(cls, group, omit: tuple[str, ...] = (), **defaults) -> None:
        """Every field's flag on an argparse parser or group, but the fields in `omit`;
        `defaults` replace a flag's default (e.g. points=25), by field name or 'points'."""
        for f in dataclasses.fields(cls):
            if f.name in omit:
                continue
            if f.name == "grid":
                _add_grid_flags(group, f.metadata, defaults.get("points", Grid().points))
                continue
            meta = {k: v for k, v in f.metadata.items() if k not in ("flag", "help", "dest", "flag_default")}
            default = defaults.get(f.name, f.metadata.get("flag_default", f.default))
            group.add_argument(
                f.metadata["flag"], dest=_dest(f), default=default, help=f.metadata["help"], **meta
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace, **fixed) -> SweepSetting:
        """The setting of parsed flags (add_flags'); `fixed` gives fields their flags did not."""
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in fixed:
                values[f.name] = fixed[f.name]
            elif f.name == "grid":
                text = getattr(args, "grid", None)
                values["grid"] = parse_grid(text) if text is not None else Grid(points=args.points)
            elif hasattr(args, _dest(f)):
                value = getattr(args, _dest(f))
                if f.name == "eval_examples" and value == 0:
                    raise LinpathError(
                        "--eval-examples 0 would evaluate no example: give a positive number, or leave "
                        "the flag out to evaluate the whole split"
                    )
                values[f.name] = (
                    f.default if value is None and f.name in ("params", "eval_examples") else value
                )
        return cls(**values)


SETTING_FIELDS = tuple(f.name for f in dataclasses.fields(SweepSetting))


def _add_grid_flags(group, meta: dict, points: int) -> None:
    group.add_argument(
        "--points",
        type=int,
        default=points,
        help=f"grid size: evenly spaced x in [0, 1], ends included (default {points})",
    )
    group.add_argument(meta["flag"], dest="grid", default=None, help=meta["help"])


@dataclass(frozen=True)
class KeyFields:
    """What a sweep folder's key tells of its setting (parse_key): `values` holds each field of
    SweepSetting by name (read as attributes: fields.split), None where the key holds only a
    digest (a values grid, a parameter subset with other characters); grid_exact is False where
    the key rounds the grid's range."""

    values: dict
    grid_exact: bool = True

    def __getattr__(self, name: str):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def of(cls, setting: SweepSetting) -> KeyFields:
        """All that a setting's key tells, exactly."""
        return cls({f.name: getattr(setting, f.name) for f in dataclasses.fields(SweepSetting)})

    def setting(self) -> SweepSetting | None:
        """The setting itself, when the key determines every field exactly."""
        known = {k: v for k, v in self.values.items() if k not in OPTIONAL}
        if not self.grid_exact or any(v is None for v in known.values()):
            return None
        return SweepSetting(**self.values)


_KEY = re.compile(
    r"^(?P<split>[a-z]+)-(?P<bn>[a-z]+)(?P<bn_batches>\d+)?-(?P<grid>.+)-(?P<precision>"
    + "|".join(PRECISIONS)
    + r")(?:-n(?P<n>\d+))?(?:-params\[(?P<params>[A-Za-z0-9._,=]+?)(?P<digest>-[0-9a-f]{8})?\]-hold(?P<hold>"
    + "|".join(HOLDS)
    + "))?(?:-(?P<task>"
    + "|".join(t for t in TASKS if t != "classification")
    + r"))?(?:-se(?P<se>\d[0-9.]*(?:e[+-]?\d+)?)(?:-min(?P<min>\d+))?)?$"
)


def parse_key(key: str) -> KeyFields | None:
    """The fields a sweep folder's key names (SweepSetting.key read back); None when the name is
    no setting's key."""
    m = _KEY.match(key)
    if m is None or m.group("bn") not in BN_POLICIES:
        return None
    if (m.group("bn") == "recompute") != (m.group("bn_batches") is not None):
        return None
    grid, exact = grid_of_key(m.group("grid"))
    params = m.group("params") or ""
    values = {
        "split": m.group("split"),
        "bn": m.group("bn"),
        "bn_batches": int(m.group("bn_batches") or DEFAULT_BN_BATCHES),
        "grid": grid,
        "precision": m.group("precision"),
        "eval_examples": int(m.group("n") or 0),
        "params": params.replace("layer=", "layer:") if not m.group("digest") else None,
        "hold": m.group("hold") or "end",
        "task": m.group("task") or "classification",
        "se_target": float(m.group("se")) if m.group("se") else None,
        "min_examples": int(m.group("min") or MIN_EXAMPLES),
    }
    return KeyFields(values, exact)


def params_slug(spec: str) -> str:
    """A parameter subset as a folder name's part: the spec itself where it is plain
    (letters, digits, '.', '_', ',' and 'layer:' written 'layer='), else its plain characters
    and a digest of the spec, so two specs never share a folder."""
    slug = spec.replace("layer:", "layer=")
    if "=" not in spec and re.fullmatch(r"[A-Za-z0-9._,=]+", slug):
        return slug
    digest = hashlib.sha256(spec.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9._,=]", "_", slug) + "-" + digest


def parse_steps(text: str | None) -> list[int] | None:
    """--from-steps: '0,16,1024' -> [0, 16, 1024]; empty -> None (every kept t)."""
    if text is None or text == "":
        return None
    try:
        return sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise LinpathError(
            f"--from-steps takes iterations separated by commas (e.g. 0,16,1024), got {text!r}"
        ) from None
