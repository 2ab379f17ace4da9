"""linpath path: the path between any two saved states, of a run's model or your own."""

import json
from pathlib import Path

from linpath.cli import common
from linpath.cli.registry import Command
from linpath.errors import LinpathError
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
    g = p.add_argument_group("sweep setting (as 'linpath sweep')")
    common.add_evaluation_options(g)
    g.add_argument(
        "--bn-data",
        default=None,
        help="recompute policy: the data set whose training split gives the batches (default: --data's), "
        "or a .pt file of (inputs, targets)",
    )
    # no --bn: the path's policy (recompute on an aligned BatchNorm model, else interpolate)
    p.set_defaults(bn=None)
    _add_stream_options(p)
    common.add_common(p)


def _add_stream_options(p) -> None:
    """Options for language models, model folders and streamed data (commands/stream_path.py)."""
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


def run(args) -> int:
    from linpath.api.resolve import path_between_files

    streamed = _streamed(args)
    if streamed is not None:
        return streamed
    setting = SweepSetting.from_args(args, bn=args.bn or "interpolate")
    options = _options(args, bn_data=args.bn_data, align_end=args.align, choose_bn=args.bn is None)
    curve, files = path_between_files(
        args.start, args.end, args.model, args.data, args.out, setting, **vars(options)
    )
    _print_path(curve, json.loads((Path(args.out) / "setting.json").read_text()))
    if args.align:
        print(f"aligned {args.end} to {args.start} by weight matching; BatchNorm policy: {curve.bn}")
    print(f"wrote: {', '.join(str(f) for f in files)}")
    return 0


def _options(args, **more):
    """commands.path.PathOptions from the command line (`more`: what only one mode takes)."""
    from linpath.api.resolve import PathOptions

    return PathOptions(
        data_root=args.data_root,
        device=args.device,
        batch_size=args.batch_size,
        num_classes=args.num_classes,
        allow_nonfinite=args.allow_nonfinite,
        key=args.key,
        output=args.output,
        progress=not args.quiet,
        **more,
    )


def _streamed(args) -> int | None:
    """`linpath path` on the streamed evaluator when the job asks for it (a model folder, a task,
    text data, --se-target: commands/stream_path.py), else None."""
    from linpath.api.stream_files import StreamOptions, streamed_path_between_files, summary_lines

    stream = StreamOptions(
        args.task, args.se_target, args.min_examples, args.tokenizer, args.seq_len, args.text_field
    )
    if not stream.wanted(args.start, args.end, args.data):
        return None
    if args.align or args.bn_data:
        raise LinpathError("--align and --bn-data are not supported with streamed evaluation")
    setting = SweepSetting.from_args(args, bn=args.bn or "interpolate")
    curve, files = streamed_path_between_files(
        args.start, args.end, args.model, args.data, Path(args.out), setting, stream, _options(args)
    )
    if files:  # rank 0's
        print("\n".join(summary_lines(curve, json.loads((Path(args.out) / "setting.json").read_text()))))
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
    print("\n".join(curve.summary_lines(with_se=record["population"] > record["eval_examples"])))


COMMAND = Command("path", "evaluate the path between any two saved states", arguments, run, order=10)
