"""linpath train: train a preset's replicates (resumes; reuses finished ones)."""

from linpath.cli import common
from linpath.cli.registry import Command


def arguments(p) -> None:
    p.add_argument("preset", help="a preset name (see 'linpath presets')")
    common.add_out(p)
    common.add_common(p)
    common.add_overrides(p)
    common.add_tensorboard(p)


def run(args) -> int:
    from linpath.runs import stages
    from linpath.runtime import distributed

    spec = common.spec_from(args)
    world = distributed.init(args.device)
    run_dir = stages.train(
        spec, args.out, args.data_root, args.device, not args.quiet, world, args.tensorboard, args.only
    )
    if world.is_main:
        print(f"trained: {run_dir.root}")
    return 0


COMMAND = Command(
    "train", "train a preset's replicates (resumes; reuses finished ones)", arguments, run, order=2
)
