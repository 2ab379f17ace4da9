"""linpath plan: how many replicates and evaluation examples decide a claim, from a pilot run."""

from linpath.cli import common
from linpath.cli.registry import Command
from linpath.errors import LinpathError


def arguments(p) -> None:
    p.add_argument("run_dir", help="the pilot: a swept run (at least 2 replicates)")
    p.add_argument("--setting", required=True, help="the pilot's sweep setting (a folder name under sweep/)")
    p.add_argument(
        "--claim",
        choices=("no-barrier", "barrier"),
        default="no-barrier",
        help="no-barrier: no error barrier larger than --delta at any t (the equivalence test); "
        "barrier: one above the verdicts' threshold at the pilot's highest t (default no-barrier)",
    )
    p.add_argument(
        "--delta", type=float, default=0.005, help="equivalence margin in error units (default 0.005)"
    )
    p.add_argument("--power", type=float, default=0.8, help="the power to reach (default 0.8)")
    p.add_argument(
        "--examples",
        default=None,
        help="evaluation examples to plan for, e.g. 1000,5000,10000 (default: the pilot's)",
    )
    p.add_argument(
        "--population", type=int, default=None, help="the split's size, for a pilot on a subset (-nN)"
    )


def run(args) -> int:
    from linpath.analysis.planner import plan_rows
    from linpath.runs.decide import pilot

    try:
        examples = [int(n) for n in args.examples.split(",") if n.strip()] if args.examples else None
    except ValueError:
        raise LinpathError(f"--examples takes numbers separated by commas, got {args.examples!r}") from None
    heights, pilot_examples = pilot(common.run_folder(args.run_dir), args.setting)
    rows = plan_rows(heights, args.claim, args.delta, args.power, examples, pilot_examples, args.population)
    for row in rows:
        needed = "more than 1000" if row["replicates"] != row["replicates"] else int(row["replicates"])
        print(
            f"{row['claim']} at δ = {row['delta']:g}, power {row['power_target']:g}, {row['examples'] or 'all'} "
            f"examples: {needed} replicates (hardest t = {row['t']})"
        )
    return 0


COMMAND = Command(
    "plan", "replicates and examples that decide a claim at a given δ and power, from a pilot run", arguments,
    run, order=9,
)  # fmt: skip
