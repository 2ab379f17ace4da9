"""linpath run: train, sweep and report a preset, end to end."""

from linpath.cli import common
from linpath.cli.registry import Command
from linpath.sweep.setting import SweepSetting


def arguments(p) -> None:
    p.add_argument("preset", help="a preset name (see 'linpath presets')")
    common.add_out(p)
    common.add_common(p)
    common.add_overrides(p)
    common.add_sweep_options(p)
    common.add_report_options(p)


def run(args) -> int:
    from linpath.runs import stages
    from linpath.runtime import distributed

    spec = common.spec_from(args)
    setting = SweepSetting.from_args(args)  # bad sweep options fail before training
    world = distributed.init(args.device)
    run_dir = stages.train(
        spec, args.out, args.data_root, args.device, not args.quiet, world, args.tensorboard, args.only
    )
    say = print if world.is_main else (lambda *a: None)
    say(f"trained: {run_dir.root}")
    stages.sweep(run_dir.root, setting, common.sweep_options(args, world))
    say(f"swept: {run_dir.paths_csv}")
    if world.is_main:
        common.print_report(
            stages.report(run_dir.root, args.metric, tensorboard=args.tensorboard, delta=args.delta)
        )
    return 0


COMMAND = Command("run", "train, sweep and report a preset, end to end", arguments, run, order=1)
