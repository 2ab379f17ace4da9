"""Command line: parse arguments, call pipeline.py, print. Errors are one line, exit 2."""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from .errors import LinpathError
from .evaluate import BN_POLICIES
from .metrics import METRICS
from .spec import PRESETS, override_fields, preset


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump)."""

    def error(self, message):
        self.exit(2, f"linpath: error: {message} (see '{self.prog} --help')\n")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overrides of the preset (they enter spec.json and the run's hash)")
    from .spec import DataSpec, ModelSpec, TrainSpec

    hints = {**typing.get_type_hints(DataSpec), **typing.get_type_hints(ModelSpec), **typing.get_type_hints(TrainSpec)}
    for f in override_fields():
        kind = hints[f.name]
        g.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                       type=_bool if kind is bool else kind, metavar=kind.__name__.upper(), help=f.metadata["help"])
    g.add_argument("--replicates", type=int, default=None, help="number of replicates (seeds seed..seed+R-1); default 3")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None, help="folder holding mnist/, cifar10/, imagenet/ (default $LINPATH_DATA or ~/.cache/linpath/data)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_sweep_options(p: argparse.ArgumentParser, precision_flag: str) -> None:
    g = p.add_argument_group("sweep")
    g.add_argument("--points", type=int, default=100, help="grid size: evenly spaced x in [0, 1], ends included (default 100)")
    g.add_argument("--from-steps", default=None, help="starting iterations t, e.g. 0,16,1024 (default: every kept t)")
    g.add_argument("--split", choices=("test", "train"), default="test", help="evaluation split (default test)")
    g.add_argument("--bn", choices=BN_POLICIES, default="interpolate", help="BatchNorm policy along the path (default interpolate)")
    g.add_argument(precision_flag, dest="sweep_precision", choices=("fp32", "bf16"), default="fp32", help="evaluation arithmetic (default fp32)")


def _add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", choices=METRICS[:-1], default="rise_over_start", help="the metric of Figure 3 (default rise_over_start, the paper's)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="linpath", description="Loss and error along linear paths in weight space (Frankle 2020).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("presets", help="list the presets")

    p = sub.add_parser("run", help="train, sweep and report a preset, end to end")
    p.add_argument("preset", help="a preset name (see 'linpath presets')")
    p.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")
    _add_common(p)
    _add_overrides(p)
    _add_sweep_options(p, "--sweep-precision")
    _add_report_options(p)

    p = sub.add_parser("train", help="train a preset's replicates (resumes; reuses finished ones)")
    p.add_argument("preset")
    p.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")
    _add_common(p)
    _add_overrides(p)

    p = sub.add_parser("sweep", help="evaluate the paths of a trained run (resumes)")
    p.add_argument("run_dir", help="a run folder, e.g. runs/mnist_lenet_300_100-<hash>")
    _add_common(p)
    _add_sweep_options(p, "--precision")

    p = sub.add_parser("report", help="metrics.csv, figures and report.md of a swept run")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--bn", choices=BN_POLICIES, default="interpolate")
    _add_report_options(p)
    return parser


def _spec_from(args):
    overrides = {f.name: getattr(args, f.name) for f in override_fields()}
    overrides["replicates"] = args.replicates
    return preset(args.preset).with_overrides(overrides)


def _setting(args):
    from .grids import Grid
    from .sweep import SweepSetting

    return SweepSetting(split=args.split, bn=args.bn, grid=Grid(points=args.points), precision=args.sweep_precision)


def _dispatch(args) -> int:
    from . import pipeline
    from .sweep import parse_steps

    progress = not getattr(args, "quiet", False)
    if args.command == "presets":
        for name, spec in PRESETS.items():
            t = spec.train
            print(f"{name:22s} {spec.data.dataset:9s} {t.training_steps:>6s} batch {spec.data.batch_size:<5d} lr {t.lr:<5g} "
                  f"momentum {t.momentum:<4g} wd {t.weight_decay:<7g} milestones {t.milestone_steps or '-'}")
        return 0
    if args.command in ("run", "train"):
        spec = _spec_from(args)
        run = pipeline.train(spec, args.out, args.data_root, args.device, progress)
        print(f"trained: {run.root}")
        if args.command == "train":
            return 0
        setting = _setting(args)
        pipeline.sweep(run.root, setting, args.data_root, args.device, parse_steps(args.from_steps), progress)
        print(f"swept: {run.paths_csv}")
        print(f"report: {pipeline.report(run.root, setting.split, setting.bn, args.metric)}")
        return 0
    if args.command == "sweep":
        if not Path(args.run_dir).is_dir():
            raise LinpathError(f"no run folder at {args.run_dir}")
        setting = _setting(args)
        run = pipeline.sweep(args.run_dir, setting, args.data_root, args.device, parse_steps(args.from_steps), progress)
        print(f"swept: {run.paths_csv}")
        return 0
    if args.command == "report":
        if not Path(args.run_dir).is_dir():
            raise LinpathError(f"no run folder at {args.run_dir}")
        print(f"report: {pipeline.report(args.run_dir, args.split, args.bn, args.metric)}")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except LinpathError as e:
        print(f"linpath: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("linpath: interrupted; finished work is saved, rerun the same command to resume", file=sys.stderr)
        return 130
