"""linpath path: the path between any two saved states, of a run's model or your own."""

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
    _add_setting_options(p)
    _add_stream_options(p)
    _add_curvature_options(p)
    common.add_common(p)


def _add_curvature_options(p) -> None:
    g = p.add_argument_group("curvature along the path (engine/curvature.py)")
    g.add_argument(
        "--curvature",
        action="store_true",
        help="also the slope dL/dx and the directional curvature d²L/dx² = uᵀHu at every x (u = END − START, "
        "exact, loss units; negative where the path is not convex)",
    )
    g.add_argument(
        "--curvature-at",
        default=None,
        help="x where the Hessian's top eigenvalues and its trace are estimated, e.g. 0,0.5,1",
    )
    g.add_argument("--top-k", type=int, default=5, help="eigenvalues at each --curvature-at x (default 5)")
    g.add_argument("--lanczos-steps", type=int, default=None, help="Lanczos products (default: the solver's)")
    g.add_argument(
        "--trace-matvecs", type=int, default=60, help="Hutch++ products for the trace (default 60)"
    )
    g.add_argument(
        "--curvature-moving",
        choices=("path", "weights"),
        default=None,
        help="path: BatchNorm statistics move with x as the curve's do (default under interpolate); weights: held",
    )
    g.add_argument(
        "--curvature-examples",
        type=int,
        default=None,
        help="spectra and traces on the first N evaluated examples",
    )


def _add_setting_options(p) -> None:
    """The sweep setting's flags (the one evaluation setting) and the recompute policy's data."""
    g = p.add_argument_group(
        "sweep setting (as 'linpath sweep'; --task, --se-target, --min-examples: streamed)"
    )
    common.add_evaluation_options(g)
    g.add_argument(
        "--bn-data",
        default=None,
        help="recompute policy: the data set whose training split gives the batches (default: --data's), "
        "or a .pt file of (inputs, targets)",
    )
    # no --bn: the path's policy (recompute on an aligned BatchNorm model, else interpolate)
    p.set_defaults(bn=None)


def _add_stream_options(p) -> None:
    """Options for text data read in token blocks (data/stream.py's TextBlocks)."""
    g = p.add_argument_group(
        "language models and streamed data (a model folder as START/END, --task causal-lm, a text "
        "--data or --se-target: the states stay on disk and the data is read a batch at a time)"
    )
    common.add_text_options(g)


def run(args) -> int:
    """Strings to objects (api/resolve.py), then the one path job and its folder; under torchrun
    the ranks share a streamed job's batches and rank 0 writes and prints."""
    from linpath.api.path_folder import summary_lines, write_path_folder
    from linpath.api.resolve import PathArgs, path_inputs
    from linpath.io.jsonfile import read_json
    from linpath.runtime import distributed

    setting = SweepSetting.from_args(args, bn=args.bn or "interpolate")
    world = distributed.init(args.device)
    path_args = PathArgs(
        args.start, args.end, args.model, args.data, args.num_classes, args.key, args.output, args.data_root,
        world.device(args.device), args.batch_size, args.bn_data, args.bn is None, args.align, args.tokenizer,
        args.seq_len, args.text_field, args.allow_nonfinite, not args.quiet and world.is_main, _curvature(args),
    )  # fmt: skip
    inputs = path_inputs(path_args, setting)
    curve, files = write_path_folder(inputs, args.out, write=world.is_main)
    if files:
        print("\n".join(summary_lines(curve, read_json(files[1], dict))))
        if args.align:
            print(f"aligned {args.end} to {args.start} by weight matching; BatchNorm policy: {curve.bn}")
        print(f"wrote: {', '.join(str(f) for f in files)}")
    return 0


def _curvature(args):
    """--curvature and --curvature-at as a CurvatureRequest (None when neither is given)."""
    from linpath.api.options import CurvatureRequest
    from linpath.errors import LinpathError

    if not args.curvature and args.curvature_at is None:
        return None
    try:
        at = tuple(float(x) for x in (args.curvature_at or "").split(",") if x.strip())
    except ValueError:
        raise LinpathError(
            f"--curvature-at takes x values separated by commas, got {args.curvature_at!r}"
        ) from None
    return CurvatureRequest(at, args.top_k, args.lanczos_steps, args.trace_matvecs, args.curvature_moving,
                            args.curvature_examples)  # fmt: skip


COMMAND = Command("path", "evaluate the path between any two saved states", arguments, run, order=10)
