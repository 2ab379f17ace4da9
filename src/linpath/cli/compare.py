"""linpath compare: two sweep settings of a run compared on the same states, per t."""

from linpath.cli import common
from linpath.cli.registry import Command


def arguments(p) -> None:
    p.add_argument("run_dir")
    p.add_argument(
        "a",
        help="a sweep setting of the run (a folder name under sweep/), e.g. test-recompute16-uniform100-fp32",
    )
    p.add_argument(
        "b", help="the setting it is compared with, e.g. test-interpolate-uniform100-fp32 (a minus b)"
    )
    p.add_argument("--quantity", choices=("loss", "error"), default="error", help="default error")
    p.add_argument(
        "--metric",
        default="rise_over_endpoints",
        help="the path metric compared (default rise_over_endpoints: the rise above both ends)",
    )


def run(args) -> int:
    """One line per t: the mean difference with its 95 % interval; the table's path."""
    from linpath.runs.decide import compare

    rows, table = compare(common.run_folder(args.run_dir), args.a, args.b, args.quantity, args.metric)
    for row in rows:
        print(
            f"t={row['t']}: {row['estimate']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] "
            f"(p = {row['p_value']:.2g}, {row['replicates']} replicates): {row['verdict']}"
        )
    print(f"wrote: {table}")
    return 0


COMMAND = Command(
    "compare", "two sweep settings of a run on the same states: the difference per t, with intervals", arguments,
    run, order=8,
)  # fmt: skip
