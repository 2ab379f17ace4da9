"""linpath trajectory: a replicate's kept states against the line from init to final."""

from linpath.cli import common
from linpath.cli.registry import Command


def arguments(p) -> None:
    p.add_argument("run_dir")
    p.add_argument("--replicate", type=int, default=0, help="the replicate (default 0)")
    p.add_argument("--out", default=None, help="output folder (default <run>/trajectory/r<R>/)")


def run(args) -> int:
    from linpath.runs.inspect import trajectory

    rows, files = trajectory(common.run_folder(args.run_dir), args.replicate, args.out)
    for row in rows:
        print(
            f"t={row['t']}: progress {row['progress']:.3f}, distance from the line {row['distance_rel']:.3f}·‖θ_T − θ_0‖, "
            f"from the final state {row['to_final_rel']:.3f}·‖θ_T‖"
        )
    print(f"wrote: {', '.join(str(f) for f in files)}")
    return 0


COMMAND = Command(
    "trajectory", "a replicate's kept states against the line from init to final", arguments, run, order=13
)
