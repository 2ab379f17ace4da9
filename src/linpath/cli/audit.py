"""linpath audit: check a run's kept states (duplicates, missing steps, distances, NaN)."""

from linpath.cli import common
from linpath.cli.registry import Command


def arguments(p) -> None:
    p.add_argument("run_dir")
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="how far (a share of the largest distance) a later state may lie farther from the final state "
        "than an earlier one (default 0.1)",
    )
    p.add_argument(
        "--fetch",
        action="store_true",
        help="a checkpoint grid on the Hub: download every revision to read its tensors too "
        "(default: the recorded hashes, and the tensors of what is already downloaded)",
    )


def run(args) -> int:
    """One line per finding; exit 1 when there are findings, 0 when the run is clean."""
    from linpath.runs.inspect import audit

    findings, verdict = audit(common.run_folder(args.run_dir), args.tolerance, args.fetch)
    for finding in findings:
        print(f"{finding.kind}: {finding.message}")
    print(verdict)
    return 1 if findings else 0


COMMAND = Command(
    "audit", "check a run's kept states: duplicates, missing steps, distances, NaN", arguments, run, order=7
)
