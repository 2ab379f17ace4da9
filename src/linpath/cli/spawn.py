"""linpath spawn: children trained from a replicate's state at T, and their instability."""

from linpath.cli import common
from linpath.cli.registry import Command
from linpath.io.rundir import RunDir
from linpath.sweep.setting import SweepSetting


def arguments(p) -> None:
    p.add_argument("run_dir")
    p.add_argument("--at", required=True, help="spawn steps T (kept iterations), e.g. 0,100,1000, or 2ep")
    p.add_argument("--replicate", type=int, default=0, help="the parent replicate (default 0)")
    p.add_argument(
        "--children",
        type=int,
        default=2,
        help="children per spawn (default 2, at most 32; every pair is evaluated)",
    )
    p.add_argument(
        "--momentum-state",
        choices=("replay", "reset"),
        default="replay",
        help="the parent's momentum at T: replay the parent from step 0 (exact) or reset it to zero",
    )
    p.add_argument(
        "--perturb",
        type=float,
        default=None,
        metavar="EPS",
        help="children from θ_T plus noise of norm EPS × each parameter tensor's norm, all on the parent's "
        "data order (Kwok, Altıntaş et al. 2025); default: children on different data orders (SGD noise)",
    )
    p.add_argument(
        "--align",
        action="store_true",
        help="also each pair's barrier after weight matching (the permutation symmetry taken out)",
    )
    g = p.add_argument_group("sweep setting of the children's paths (as 'linpath sweep')")
    SweepSetting.add_flags(g, points=25)
    common.add_common(p)


def run(args) -> int:
    from linpath.runs.spawn import SpawnNoise, SpawnOptions, spawn_at

    noise = SpawnNoise(args.perturb, args.align)
    options = SpawnOptions(
        args.replicate, args.children, args.momentum_state, noise, args.device, not args.quiet
    )
    run_dir = common.run_folder(args.run_dir)
    for t, rows in spawn_at(run_dir, args.at, SweepSetting.from_args(args), options, args.data_root):
        for row in rows:
            aligned = " (aligned)" if int(row.get("aligned", 0)) else ""
            print(
                f"T={t} children {row['child_a']},{row['child_b']}{aligned}: error barrier {row['error_barrier']:.4f} "
                f"(errors {row['error_a']:.4f}, {row['error_b']:.4f}), loss barrier {row['loss_barrier']:.4f}"
            )
    print(f"instability: {RunDir(run_dir).instability_csv}")
    return 0


COMMAND = Command(
    "spawn",
    "train children from a replicate's state at T, measure their instability",
    arguments,
    run,
    order=14,
)
