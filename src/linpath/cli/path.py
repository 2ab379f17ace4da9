"""linpath path: the path between any two saved states, of a run's model or your own."""

import json
from pathlib import Path

from linpath.cli import common
from linpath.cli.registry import Command
from linpath.sweep.setting import SweepSetting


def _normalizations() -> str:
    import linpath.data as datasets

    return "; ".join(f"{name}: {datasets.normalization_text(name)}" for name in datasets.NORMALIZATION)


def arguments(p) -> None:
    p.add_argument(
        "start",
        help="checkpoint at x = 0: a state dict, a {'state_dict'|'model_state_dict'|'model': ...} "
        "wrapper, a Lightning .ckpt or a .safetensors file",
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
    p.add_argument("--batch-size", type=int, default=None, help=common.BATCH_HELP)
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
    common.add_evaluation_options(g)
    g.add_argument(
        "--bn-data",
        default=None,
        help="recompute policy: the data set whose training split gives the batches (default: --data's), "
        "or a .pt file of (inputs, targets)",
    )
    p.set_defaults(
        bn=None
    )  # no --bn: the path's policy (recompute on an aligned BatchNorm model, else interpolate)
    common.add_common(p)


def run(args) -> int:
    from linpath.commands.path import path_between_files

    choose_bn = args.bn is None
    setting = SweepSetting.from_args(args, bn=args.bn or "interpolate")
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
        progress=not args.quiet,
        choose_bn=choose_bn,
    )
    _print_path(curve, json.loads((Path(args.out) / "setting.json").read_text()))
    if args.align:
        print(f"aligned {args.end} to {args.start} by weight matching; BatchNorm policy: {curve.bn}")
    print(f"wrote: {', '.join(str(f) for f in files)}")
    return 0


def _print_path(curve, record: dict) -> None:
    """The summary: the setting, the normalization, the main metrics."""
    print(
        f"setting: {record['setting']} ({record['points']} points on {record['eval_examples']} of "
        f"{record['population']} {record['split']} examples)"
    )
    print(f"normalization: {record['normalization']}")
    if record["bn_data"]:
        print(f"BatchNorm statistics recomputed from: {record['bn_data']}")
    sampled = record["population"] > record["eval_examples"]
    for quantity, m in curve.metrics().items():
        values, se = getattr(curve, quantity), getattr(curve, f"{quantity}_se")
        pm = f" ± {float(se[0]):.4f}" if se is not None and sampled else ""
        print(
            f"{quantity}: start {values[0]:.4f}{pm}, end {values[-1]:.4f}, max {values.max():.4f} at x = {m['argmax_x']:.3f}; "
            f"rise_over_start {m['rise_over_start']:.4f}, rise_over_chord {m['rise_over_chord']:.4f}"
        )


COMMAND = Command("path", "evaluate the path between any two saved states", arguments, run, order=10)
