"""The command line: parse arguments, call the stages (pipeline.py, commands/), print.
Errors are one line and exit 2.

The stages (pipeline, commands, data, the distributed runtime) are imported inside the
handlers that use them, not here: so `linpath --help` and `linpath presets` do not load
matplotlib and the stages' modules, only what the parser needs (its choices and defaults)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import typing
from pathlib import Path

from linpath.analysis.metrics import METRICS
from linpath.config.presets import PRESETS, preset
from linpath.config.spec import DataSpec, ModelSpec, TrainSpec, override_fields, read_spec
from linpath.engine.bn_stats import BN_POLICIES, DEFAULT_BN_BATCHES
from linpath.engine.params import HOLDS
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.runtime.device import PRECISIONS
from linpath.sweep.grids import Grid, parse_grid
from linpath.sweep.setting import SweepSetting, parse_steps


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


def _replicate_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected replicate numbers separated by commas, got {text!r}"
        ) from None
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"expected replicate numbers >= 0, got {text!r}")
    return ids


# Spec fields whose flag says more than the field's name: training's precision is
# --train-precision, evaluation's --eval-precision, everywhere.
FLAG_NAMES = {"precision": "train-precision"}


def _add_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overrides of the preset (they enter spec.json and the run's hash)")

    hints = {
        **typing.get_type_hints(DataSpec),
        **typing.get_type_hints(ModelSpec),
        **typing.get_type_hints(TrainSpec),
    }
    for f in override_fields():
        kind = hints[f.name]
        g.add_argument(
            "--" + FLAG_NAMES.get(f.name, f.name.replace("_", "-")),
            dest=f.name,
            default=None,
            type=_bool if kind is bool else kind,
            metavar=kind.__name__.upper(),
            help=f.metadata["help"],
        )
    g.add_argument(
        "--replicates", type=int, default=None, help="number of replicates (seeds seed..seed+R-1); default 3"
    )
    g.add_argument(
        "--replicate",
        dest="only",
        type=_replicate_ids,
        default=None,
        help="train only these replicates, e.g. 2 or 0,2 (one per machine; 'linpath merge' combines the runs)",
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding mnist/, cifar10/, imagenet/ (default $LINPATH_DATA or ~/.cache/linpath/data)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_setting_options(g) -> None:
    """The options of a sweep setting (sweep/setting.py): the same names, defaults and parsing
    on every command that evaluates paths (run, sweep, path)."""
    g.add_argument(
        "--points",
        type=int,
        default=100,
        help="grid size: evenly spaced x in [0, 1], ends included (default 100)",
    )
    g.add_argument(
        "--grid",
        default=None,
        help="grid of x, overrides --points: uniform:N[:A:B], dense-end:N[:A:B], "
        "dense-start:N[:A:B], adaptive[:N[:TOL[:A:B]]][:loss|error|both], values:X1,X2,... (see docs/engine.md)",
    )
    g.add_argument(
        "--bn-batches",
        type=int,
        default=DEFAULT_BN_BATCHES,
        help=f"recompute policy: training batches per point (default {DEFAULT_BN_BATCHES})",
    )
    g.add_argument(
        "--eval-examples",
        type=int,
        default=0,
        help="evaluate a fixed class-stratified subset of N examples, "
        "with standard errors (default: the whole split)",
    )
    g.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="evaluate checkpoints holding NaN or inf (refused by default, naming the tensor)",
    )
    g.add_argument(
        "--split", choices=("test", "train"), default="test", help="evaluation split (default test)"
    )
    g.add_argument(
        "--bn",
        choices=BN_POLICIES,
        default="interpolate",
        help="BatchNorm policy along the path (default interpolate)",
    )
    g.add_argument(
        "--eval-precision",
        dest="eval_precision",
        choices=PRECISIONS,
        default="fp32",
        help="evaluation arithmetic (default fp32)",
    )
    g.add_argument(
        "--params",
        default=None,
        metavar="SPEC",
        help="move only these tensors, the others held (see --hold): glob patterns such as 'fc1.*' or "
        "'fc*.bias', 'weights', 'biases', 'bn' (BatchNorm parameters and statistics), 'layer:NAME'; "
        "comma-separated for a union. A setting of its own (default: every tensor moves)",
    )
    g.add_argument(
        "--hold",
        choices=HOLDS,
        default="end",
        help="where the tensors outside --params stay: end (trained, the default, as Vlaar & Frankle) or start",
    )


def _add_sweep_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sweep")
    _add_setting_options(g)
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the evaluated network (convnets: about "
        "1.3x faster in fp32 after a one-off compilation of ~30-60 s; worth it for long sweeps)",
    )
    g.add_argument(
        "--from-steps", default=None, help="starting iterations t, e.g. 0,16,1024 (default: every kept t)"
    )


def _add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metric",
        choices=METRICS[:-1],
        default="rise_over_start",
        help="the metric of Figure 3 (default rise_over_start, the paper's)",
    )
    _add_tensorboard(p)


def _add_tensorboard(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard scalars to RUN/tensorboard/ (per-epoch training curves, path "
        "metrics against t); the run keeps them on once asked (needs linpath[tb])",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="linpath", description="Loss and error along linear paths in weight space (Frankle 2020)."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("presets", help="list the presets")

    p = sub.add_parser("run", help="train, sweep and report a preset, end to end")
    p.add_argument("preset", help="a preset name (see 'linpath presets')")
    p.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")
    _add_common(p)
    _add_overrides(p)
    _add_sweep_options(p)
    _add_report_options(p)

    p = sub.add_parser("train", help="train a preset's replicates (resumes; reuses finished ones)")
    p.add_argument("preset")
    p.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")
    _add_common(p)
    _add_overrides(p)
    _add_tensorboard(p)

    p = sub.add_parser("sweep", help="evaluate the paths of a trained run (resumes)")
    p.add_argument("run_dir", help="a run folder, e.g. runs/mnist_lenet_300_100-<hash>")
    _add_common(p)
    _add_sweep_options(p)
    p.add_argument(
        "--per-layer",
        action="store_true",
        help="one path per layer (a module owning parameters; a convolution with the BatchNorm it feeds), "
        "the other layers held (--hold), each its own setting; then layers/<setting>-hold<H>/ holds "
        "layers.csv and a figure per t with one line per layer",
    )

    p = sub.add_parser(
        "report", help="report.md, and each sweep setting's tables and figures in results/<setting>/"
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--setting",
        action="append",
        default=None,
        help="report only this sweep setting (a folder name under sweep/; repeatable); default: every one",
    )
    _add_report_options(p)
    _add_own_model_commands(sub)
    return parser


def _add_stream_options(p) -> None:
    """`linpath path`'s options for language models, model folders and streamed data
    (commands/stream_path.py)."""
    g = p.add_argument_group(
        "language models and streamed data (a model folder as START/END, --task causal-lm, a text "
        "--data or --se-target: the states stay on disk and the data is read a batch at a time)"
    )
    g.add_argument(
        "--task",
        choices=("classification", "causal-lm"),
        default="classification",
        help="causal-lm: mean next-token cross-entropy over the scored tokens, next-token error, "
        "perplexity and bits per byte (default classification)",
    )
    g.add_argument(
        "--se-target",
        type=float,
        default=None,
        help="stop each point once the loss's standard error is at most this (the examples read are "
        "recorded per point; shuffle the data once beforehand)",
    )
    g.add_argument(
        "--min-examples",
        type=int,
        default=100,
        help="--se-target: examples (sequences for causal-lm) read before a point may stop (default 100)",
    )
    g.add_argument(
        "--tokenizer",
        default=None,
        help="text --data (.jsonl, .txt): bytes (UTF-8 bytes as ids) or module:callable / file.py:callable "
        "mapping a text to token ids",
    )
    g.add_argument(
        "--seq-len",
        type=int,
        default=None,
        help="tokens per block of text --data (default: the model's maximum positions, at most 1024)",
    )
    g.add_argument("--text-field", default="text", help="a .jsonl record's text field (default text)")


def _add_own_model_commands(sub) -> None:
    """path, spawn, import-openlth: your own checkpoints, Frankle et al. 2020's spawning, OpenLTH."""
    p = sub.add_parser("path", help="evaluate the path between any two saved states")
    p.add_argument(
        "start",
        help="checkpoint at x = 0: a state dict, a {'state_dict'|'model_state_dict'|'model': ...} "
        "wrapper, a Lightning .ckpt or a .safetensors file, or a model folder (config.json and "
        "*.safetensors shards; read a tensor at a time)",
    )
    p.add_argument("end", help="state dict file at x = 1")
    p.add_argument(
        "--model",
        default=None,
        help="a preset or model name, or module:callable / file.py:callable "
        "returning the nn.Module (default: the run folder's, when START lies in one)",
    )
    p.add_argument(
        "--data",
        default=None,
        help=f"a data set name (read from --data-root; {_normalizations()}) or a .pt file "
        "holding (inputs, targets), used as they are (default: the run folder's data set)",
    )
    p.add_argument(
        "--num-classes", type=int, default=None, help="classes of a named model (default: the data's)"
    )
    p.add_argument(
        "--key",
        default=None,
        help="dotted path to the state dict inside each checkpoint, e.g. ema.state_dict "
        "(default: found; see docs/own_model.md)",
    )
    p.add_argument(
        "--output",
        default=None,
        help="module:callable mapping the model's output to logits (default: a tensor as is, "
        "a dict's 'logits', a tuple's first element, .logits)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="evaluation batch size (default on a CPU: 2000 for fully connected nets, 256 for convnets; on CUDA 10000 and 1024)",
    )
    p.add_argument(
        "--align",
        action="store_true",
        help="permute END's units to match START's first (weight matching, Ainsworth et al. 2023; "
        "LeNet, VGG and CIFAR ResNet models, and plain MLPs; see 'linpath align')",
    )
    p.add_argument(
        "--out",
        default="path-out",
        help="output folder: paths.csv, setting.json, metrics.json, path.png/.pdf (default path-out/)",
    )
    g = p.add_argument_group("sweep setting (as 'linpath sweep')")
    _add_setting_options(g)
    g.add_argument(
        "--bn-data",
        default=None,
        help="recompute policy: the data set whose training split gives the batches (default: --data's), "
        "or a .pt file of (inputs, targets)",
    )
    # no --bn: the path's policy (recompute on an aligned BatchNorm model, else interpolate)
    p.set_defaults(bn=None)
    _add_stream_options(p)
    _add_common(p)

    _add_plane_command(sub)
    _add_align_command(sub)

    p = sub.add_parser("trajectory", help="a replicate's kept states against the line from init to final")
    p.add_argument("run_dir")
    p.add_argument("--replicate", type=int, default=0, help="the replicate (default 0)")
    p.add_argument("--out", default=None, help="output folder (default <run>/trajectory/r<R>/)")

    p = sub.add_parser(
        "spawn", help="train children from a replicate's state at T, measure their instability"
    )
    p.add_argument("run_dir")
    p.add_argument("--at", required=True, help="spawn steps T (kept iterations), e.g. 0,100,1000, or 2ep")
    p.add_argument("--replicate", type=int, default=0, help="the parent replicate (default 0)")
    p.add_argument(
        "--children", type=int, default=2, help="children per spawn (default 2; every pair is evaluated)"
    )
    p.add_argument(
        "--momentum-state",
        choices=("replay", "reset"),
        default="replay",
        help="the parent's momentum at T: replay the parent from step 0 (exact) or reset it to zero",
    )
    p.add_argument("--points", type=int, default=25, help="points on each children's path (default 25)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--bn", choices=BN_POLICIES, default="interpolate")
    _add_common(p)

    p = sub.add_parser("import-openlth", help="import an OpenLTH run folder as a linpath run folder")
    p.add_argument("source", help="an OpenLTH train_<hash> folder, or one replicate_<N>/main folder")
    p.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")
    p.add_argument(
        "--iterations-per-epoch",
        type=int,
        default=None,
        help="override OpenLTH's ceil(training examples / batch size)",
    )


def _add_plane_command(sub) -> None:
    """plane: loss and error on the plane through three states (files, or a run folder's)."""
    p = sub.add_parser(
        "plane", help="loss and error on the plane through three saved states, or around one (--seed)"
    )
    # let "--span -0.5,1.5" read as a value, not as an option
    p._negative_number_matcher = re.compile(r"^-\d*\.?\d+(,-?\d*\.?\d+)*$")
    p.add_argument(
        "states",
        nargs="+",
        help="three state files ORIGIN A B (at (0,0), (1,0), (0,1)), one CENTER with --seed, or one "
        "run folder (with --replicate and --other-replicate or --at; with --seed the center is the "
        "replicate's final state, or its state at --at)",
    )
    p.add_argument("--model", default=None, help="as for 'linpath path' (default: the run folder's)")
    p.add_argument("--data", default=None, help="as for 'linpath path' (default: the run folder's)")
    p.add_argument(
        "--num-classes", type=int, default=None, help="classes of a named model (default: the data's)"
    )
    p.add_argument(
        "--replicate", type=int, default=0, help="run folder: the replicate whose init and final span it"
    )
    p.add_argument(
        "--other-replicate", type=int, default=None, help="run folder: third state, this one's final"
    )
    p.add_argument(
        "--at", default=None, help="run folder: third state, the replicate's state at T (e.g. 100, 2ep)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="a plane around one state along two random filter-normalized directions (Li et al. 2018) "
        "drawn with this seed, instead of the plane through three states",
    )
    p.add_argument("--grid", default="21", help="points per side, N or N_ALPHA,N_BETA (default 21)")
    p.add_argument("--span", default="-0.5,1.5", help="range of α and β, LO,HI (default -0.5,1.5)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument(
        "--eval-precision", choices=PRECISIONS, default="fp32", help="evaluation arithmetic (default fp32)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="evaluation batch size (default on a CPU: 2000 for fully connected nets, 256 for convnets; on CUDA 10000 and 1024)",
    )
    p.add_argument("--allow-nonfinite", action="store_true", help="evaluate states holding NaN or inf")
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default plane-out/, or the setting's own <run>/plane/<key>/); "
        "a rerun of the same plane there resumes it",
    )
    _add_common(p)


def _add_align_command(sub) -> None:
    """align: B permuted to match A by weight matching, written as a new state file."""
    p = sub.add_parser("align", help="permute B's units to match A's (weight matching), write it to --out")
    p.add_argument("a", help="the state to match (a state file as 'linpath path' reads)")
    p.add_argument("b", help="the state to permute")
    p.add_argument(
        "--model",
        required=True,
        help="a preset or model name (mnist_lenet_300_100, cifar_vgg_16, cifar_resnet_20, ...), "
        "or module:callable returning a plain MLP",
    )
    p.add_argument("--out", required=True, help="the file to write: B aligned, a weights-only state dict")
    p.add_argument("--num-classes", type=int, default=10, help="classes of a named model (default 10)")
    p.add_argument("--key", default=None, help="dotted path to the state dict inside each checkpoint")
    p.add_argument("--seed", type=int, default=0, help="seed of the order in which groups are solved")
    p.add_argument("--force", action="store_true", help="replace --out when it exists")


def _dispatch_align(args) -> int:
    from linpath.commands.align import align_files

    out, before, after = align_files(
        args.a, args.b, args.model, args.out, args.num_classes, args.key, args.seed, args.force
    )
    print(f"distance to A over the parameters: {before:.4f} before, {after:.4f} after alignment")
    print(f"wrote: {out}")
    return 0


def _dispatch_plane(args) -> int:
    """plane; under torchrun the rows are shared among the ranks (each its own GPU) and rank 0
    draws the figure and prints."""
    from linpath.commands.plane import PlaneOptions, parse_pair, plane_between_files, plane_of_run
    from linpath.runtime import distributed

    grid, span = parse_pair(args.grid, int, "--grid"), parse_pair(args.span, float, "--span")
    world = distributed.init(args.device)
    options = PlaneOptions(
        grid=grid,
        span=span,
        split=args.split,
        device=world.device(args.device),
        precision=args.eval_precision,
        batch_size=args.batch_size,
        allow_nonfinite=args.allow_nonfinite,
        seed=args.seed,
        shard=(world.rank, world.size),
    )
    if len(args.states) == 1 and Path(args.states[0]).is_dir():
        surface, files = plane_of_run(
            args.states[0], args.replicate, args.other_replicate, args.at, options, args.out, args.data_root
        )
    else:
        surface, files = plane_between_files(
            args.states,
            args.model,
            args.data,
            args.out or "plane-out",
            options,
            args.data_root,
            args.num_classes,
        )
    if world.is_main:
        _print_plane(surface, files)
    return 0


def _print_plane(surface, files) -> None:
    """`linpath plane`'s summary: where loss and error are lowest, and the files written."""
    import numpy as np

    for quantity in ("loss", "error"):
        values = getattr(surface, quantity)
        if values is not None and np.isfinite(values).any():
            i, j = divmod(int(np.nanargmin(values)), values.shape[1])
            print(
                f"{quantity}: min {values[i, j]:.4f} at α = {surface.alpha[j]:.3f}, β = {surface.beta[i]:.3f}"
            )
    print(f"wrote: {', '.join(str(f) for f in files)}")


def _dispatch_trajectory(args) -> int:
    from linpath.analysis.trajectory import trajectory_rows, write_trajectory

    if not Path(args.run_dir).is_dir():
        raise LinpathError(f"no run folder at {args.run_dir}")
    run = RunDir(args.run_dir)
    rows = trajectory_rows(run, args.replicate)
    out = args.out or run.root / "trajectory" / f"r{args.replicate}"
    files = write_trajectory(rows, out, f"{run.root.name}, replicate {args.replicate}")
    for row in rows:
        print(
            f"t={row['t']}: progress {row['progress']:.3f}, distance from the line {row['distance_rel']:.3f}·‖θ_T − θ_0‖, "
            f"from the final state {row['to_final_rel']:.3f}·‖θ_T‖"
        )
    print(f"wrote: {', '.join(str(f) for f in files)}")
    return 0


def _spec_from(args):
    overrides = {f.name: getattr(args, f.name) for f in override_fields()}
    overrides["replicates"] = args.replicates
    return preset(args.preset).with_overrides(overrides)


def _setting(args):
    grid = parse_grid(args.grid) if args.grid is not None else Grid(points=args.points)
    return SweepSetting(
        split=args.split,
        bn=args.bn,
        grid=grid,
        precision=args.eval_precision,
        bn_batches=args.bn_batches,
        eval_examples=args.eval_examples,
        params=args.params or "",
        hold="end" if getattr(args, "per_layer", False) else args.hold,
    )


def _sweep(args, run_dir, setting, world, progress: bool):
    """The sweep stage with the command line's sweep options."""
    from linpath import pipeline

    steps = parse_steps(args.from_steps)
    return pipeline.sweep(
        run_dir,
        setting,
        args.data_root,
        args.device,
        steps,
        progress,
        world,
        args.compile,
        args.allow_nonfinite,
    )


def _sweep_layers(args, setting, world, progress: bool):
    """--per-layer: the sweep stage once per layer, then the per-layer table and figures."""
    from linpath import pipeline

    return pipeline.sweep_layers(
        args.run_dir,
        setting,
        args.hold,
        data_root=args.data_root,
        device=args.device,
        from_steps=parse_steps(args.from_steps),
        progress=progress,
        world=world,
        compile=args.compile,
        allow_nonfinite=args.allow_nonfinite,
    )


def _dispatch(args) -> int:
    progress = not getattr(args, "quiet", False)
    if args.command in ("run", "train", "sweep", "report"):
        return _dispatch_stages(args, progress)
    if args.command == "presets":
        for name, entry in PRESETS.items():
            spec, t = entry.spec, entry.spec.train
            print(
                f"{name:22s} {spec.data.dataset:9s} {t.training_steps:>6s} batch {spec.data.batch_size:<5d} lr {t.lr:<5g} "
                f"momentum {t.momentum:<4g} wd {t.weight_decay:<7g} milestones {t.milestone_steps or '-'}"
            )
        return 0
    if args.command in ("path", "spawn", "import-openlth"):
        return _dispatch_own_model(args, progress)
    if args.command == "plane":
        return _dispatch_plane(args)
    if args.command == "align":
        return _dispatch_align(args)
    if args.command == "trajectory":
        return _dispatch_trajectory(args)
    raise AssertionError(args.command)


def _dispatch_stages(args, progress: bool) -> int:
    """run, train, sweep, report."""
    from linpath import pipeline
    from linpath.runtime import distributed

    if args.command in ("run", "train"):
        spec = _spec_from(args)
        setting = _setting(args) if args.command == "run" else None  # bad sweep options fail before training
        world = distributed.init(args.device)
        run = pipeline.train(
            spec, args.out, args.data_root, args.device, progress, world, args.tensorboard, args.only
        )
        say = print if world.is_main else (lambda *a: None)
        say(f"trained: {run.root}")
        if args.command == "train":
            return 0
        _sweep(args, run.root, setting, world, progress)
        say(f"swept: {run.paths_csv}")
        if world.is_main:
            report = pipeline.report(run.root, args.metric, tensorboard=args.tensorboard)
            say(f"report: {report} (interactive: {report.with_suffix('.html')})")
        return 0
    if args.command == "sweep":
        if not Path(args.run_dir).is_dir():
            raise LinpathError(f"no run folder at {args.run_dir}")
        setting = _setting(args)
        world = distributed.init(args.device)
        if args.per_layer:
            folder = _sweep_layers(args, setting, world, progress)
            if world.is_main:
                print(f"per layer: {folder}")
            return 0
        run = _sweep(args, args.run_dir, setting, world, progress)
        if world.is_main:
            print(f"swept: {run.paths_csv}")
        return 0
    if not Path(args.run_dir).is_dir():
        raise LinpathError(f"no run folder at {args.run_dir}")
    report = pipeline.report(args.run_dir, args.metric, args.setting, args.tensorboard)
    print(f"report: {report} (interactive: {report.with_suffix('.html')})")
    return 0


def _normalizations() -> str:
    from linpath import data as datasets

    return "; ".join(f"{name}: {datasets.normalization_text(name)}" for name in datasets.NORMALIZATION)


def _print_path(curve, record: dict) -> None:
    """`linpath path`'s summary: the setting, the normalization, the main metrics."""
    print(
        f"setting: {record['setting']} ({record['points']} points on {record['eval_examples']} of "
        f"{record['population']} {record['split']} examples)"
    )
    print(f"normalization: {record['normalization']}")
    if record["bn_data"]:
        print(f"BatchNorm statistics recomputed from: {record['bn_data']}")
    for quantity, m in curve.metrics().items():
        values = getattr(curve, quantity)
        se = getattr(curve, f"{quantity}_se")
        pm = (
            f" ± {float(se[0]):.4f}"
            if se is not None and record["population"] > record["eval_examples"]
            else ""
        )
        print(
            f"{quantity}: start {values[0]:.4f}{pm}, end {values[-1]:.4f}, max {values.max():.4f} at x = {m['argmax_x']:.3f}; "
            f"rise_over_start {m['rise_over_start']:.4f}, rise_over_chord {m['rise_over_chord']:.4f}"
        )


def _streamed_path(args, progress: bool) -> int | None:
    """`linpath path` on the streamed evaluator when the job asks for it (a model folder, a task,
    text data, --se-target: commands/stream_path.py), else None."""
    from linpath.commands.path import PathOptions
    from linpath.commands.stream_path import StreamOptions, streamed_path_between_files, summary_lines

    stream = StreamOptions(
        args.task, args.se_target, args.min_examples, args.tokenizer, args.seq_len, args.text_field
    )
    if not stream.wanted(args.start, args.end, args.data):
        return None
    if args.align or args.bn_data:
        raise LinpathError("--align and --bn-data are not supported with streamed evaluation")
    args.bn = args.bn or "interpolate"
    options = PathOptions(
        data_root=args.data_root,
        device=args.device,
        batch_size=args.batch_size,
        num_classes=args.num_classes,
        allow_nonfinite=args.allow_nonfinite,
        key=args.key,
        output=args.output,
        progress=progress,
    )
    curve, files = streamed_path_between_files(
        args.start, args.end, args.model, args.data, Path(args.out), _setting(args), stream, options
    )
    if files:  # rank 0's
        print("\n".join(summary_lines(curve, json.loads((Path(args.out) / "setting.json").read_text()))))
        print(f"wrote: {', '.join(str(f) for f in files)}")
    return 0


def _dispatch_own_model(args, progress: bool) -> int:
    from linpath import data as datasets
    from linpath.commands.openlth import import_run
    from linpath.commands.path import path_between_files
    from linpath.commands.spawn import spawn, spawn_steps

    if args.command == "path":
        streamed = _streamed_path(args, progress)
        if streamed is not None:
            return streamed
        choose_bn, args.bn = args.bn is None, args.bn or "interpolate"
        setting = _setting(args)
        curve, files = path_between_files(
            args.start,
            args.end,
            args.model,
            args.data,
            args.out,
            setting,
            data_root=args.data_root,
            device=args.device,
            batch_size=args.batch_size,
            num_classes=args.num_classes,
            bn_data=args.bn_data,
            allow_nonfinite=args.allow_nonfinite,
            align_end=args.align,
            key=args.key,
            output=args.output,
            progress=progress,
            choose_bn=choose_bn,
        )
        _print_path(curve, json.loads((Path(args.out) / "setting.json").read_text()))
        if args.align:
            print(f"aligned {args.end} to {args.start} by weight matching; BatchNorm policy: {curve.bn}")
        print(f"wrote: {', '.join(str(f) for f in files)}")
        return 0
    if args.command == "spawn":
        if not Path(args.run_dir).is_dir():
            raise LinpathError(f"no run folder at {args.run_dir}")
        run = RunDir(args.run_dir)
        source = datasets.load(read_spec(run).data.dataset, args.data_root)
        for t in spawn_steps(run, args.at, source):
            rows = spawn(
                run.root,
                t,
                source,
                args.replicate,
                args.children,
                args.device,
                args.momentum_state,
                Grid(points=args.points),
                args.split,
                args.bn,
                progress,
            )
            for row in rows:
                print(
                    f"T={t} children {row['child_a']},{row['child_b']}: error barrier {row['error_barrier']:.4f} "
                    f"(errors {row['error_a']:.4f}, {row['error_b']:.4f}), loss barrier {row['loss_barrier']:.4f}"
                )
        print(f"instability: {run.root / 'spawn' / 'instability.csv'}")
        return 0
    run, notes = import_run(args.source, args.out, args.iterations_per_epoch)
    for note in notes:
        print(f"note: {note}")
    print(f"imported: {run.root}")
    print(f"next: linpath sweep {run.root} && linpath report {run.root}")
    return 0


def _os_error(e: OSError) -> str:
    reason = e.strerror or str(e) or type(e).__name__
    files = [str(f) for f in (e.filename, e.filename2) if f is not None]
    return f"{reason}: {' -> '.join(files)}" if files else reason


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except LinpathError as e:
        rank = os.environ.get("RANK", "0")
        where = f" (rank {rank})" if rank != "0" else ""  # under torchrun, say which rank failed
        print(f"linpath: error{where}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine's or the file system's refusal: one line naming the file
        print(f"linpath: error: {_os_error(e)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:
        print(f"linpath: error: a file is not UTF-8 text ({e.reason} at byte {e.start})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "linpath: interrupted; finished work is saved, rerun the same command to resume", file=sys.stderr
        )
        return 130
    finally:
        if "linpath.runtime.distributed" in sys.modules:  # loaded by the commands that train, sweep or plane
            sys.modules["linpath.runtime.distributed"].shutdown()
