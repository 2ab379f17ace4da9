"""linpath sweep: evaluate the paths of a trained run (resumes)."""

from linpath.cli import common
from linpath.cli.registry import Command
from linpath.errors import LinpathError
from linpath.sweep.setting import SETTING_FIELDS, STREAM_FIELDS, SweepSetting


def arguments(p) -> None:
    p.add_argument("run_dir", help="a run folder, e.g. runs/mnist_lenet_300_100-<hash>")
    common.add_common(p)
    common.add_sweep_options(p)
    p.add_argument(
        "--per-layer",
        action="store_true",
        help="one path per layer (a module owning parameters; a convolution with the BatchNorm it feeds), "
        "the other layers held (--hold), each its own setting; then layers/<setting>-hold<H>/ holds "
        "layers.csv and a figure per t with one line per layer",
    )
    g = p.add_argument_group(
        "external runs (linpath.Keeper, the Lightning and Hugging Face callbacks, 'linpath import')"
    )
    g.add_argument(
        "--model", default=None, help="module:callable or file.py:callable returning the nn.Module"
    )
    g.add_argument(
        "--data",
        default=None,
        help="the evaluation data: a data set name or a .pt file of (inputs, targets); for a checkpoint "
        "grid a text file (.jsonl, .txt)",
    )
    g.add_argument(
        "--num-classes", type=int, default=None, help="classes of a named model (default: the data's)"
    )
    _add_grid_options(p)


def _add_grid_options(p) -> None:
    """A checkpoint grid's options ('linpath import hf://ORG/NAME'): its task and stopping rule
    (the setting's streamed fields), its text, and its audit."""
    g = p.add_argument_group("checkpoint grids ('linpath import hf://ORG/NAME', a folder of revisions)")
    SweepSetting.add_flags(g, omit=tuple(f for f in SETTING_FIELDS if f not in STREAM_FIELDS))
    common.add_text_options(g)
    g.add_argument(
        "--allow-findings",
        action="store_true",
        help="sweep a grid whose audit has findings; each is then a warning, and the report lists them",
    )
    g.add_argument(
        "--fetch-audit", action="store_true", help="download every revision first, to audit its tensors too"
    )


def run(args) -> int:
    from linpath.runs import stages
    from linpath.runtime import distributed

    common.run_folder(args.run_dir)
    setting = SweepSetting.from_args(args, hold="end") if args.per_layer else SweepSetting.from_args(args)
    if args.per_layer and (args.model is not None or args.data is not None):
        raise LinpathError(
            "--per-layer builds the model from the run's spec; it does not take --model/--data"
        )
    world = distributed.init(args.device)
    options = common.sweep_options(args, world, _inputs(args))
    if args.per_layer:
        folder = stages.sweep_layers(args.run_dir, setting, args.hold, options)
        if world.is_main:
            print(f"per layer: {folder}")
        return 0
    run_dir = stages.sweep(args.run_dir, setting, options)
    if world.is_main:
        print(f"swept: {run_dir.paths_csv}")
    return 0


def _inputs(args):
    """What the run's spec cannot build: a checkpoint grid's text, or an external run's --model
    and --data (None for a preset's run)."""
    from linpath.api.resolve import GridArgs, external_inputs, grid_data
    from linpath.io.rundir import RunDir

    if RunDir(args.run_dir).is_grid:
        grid = GridArgs(args.data, args.tokenizer, args.seq_len, args.text_field, None, args.model)
        return grid_data(args.run_dir, grid)
    return external_inputs(args.model, args.data, args.data_root, args.split, args.num_classes)


COMMAND = Command("sweep", "evaluate the paths of a trained run (resumes)", arguments, run, order=3)
