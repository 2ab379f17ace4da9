"""linpath spawn: children trained from a replicate's state at T, and their instability."""

from linpath.cli import common
from linpath.cli.registry import Command
from linpath.sweep.setting import SweepSetting


def arguments(p) -> None:
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
    g = p.add_argument_group("sweep setting of the children's paths (as 'linpath sweep')")
    SweepSetting.add_flags(g, points=25)
    common.add_common(p)


def run(args) -> int:
    import linpath.data as datasets
    from linpath.config.spec import read_spec
    from linpath.io.rundir import RunDir
    from linpath.runs.spawn import spawn, spawn_steps

    run_dir = RunDir(common.run_folder(args.run_dir))
    setting = SweepSetting.from_args(args)
    source = datasets.load(read_spec(run_dir).data.dataset, args.data_root)
    for t in spawn_steps(run_dir, args.at, source):
        rows = spawn(
            run_dir.root,
            t,
            source,
            args.replicate,
            args.children,
            args.device,
            args.momentum_state,
            setting,
            not args.quiet,
        )
        for row in rows:
            print(
                f"T={t} children {row['child_a']},{row['child_b']}: error barrier {row['error_barrier']:.4f} "
                f"(errors {row['error_a']:.4f}, {row['error_b']:.4f}), loss barrier {row['loss_barrier']:.4f}"
            )
    print(f"instability: {run_dir.instability_csv}")
    return 0


COMMAND = Command(
    "spawn",
    "train children from a replicate's state at T, measure their instability",
    arguments,
    run,
    order=14,
)
