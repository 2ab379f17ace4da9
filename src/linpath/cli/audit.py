"""linpath audit: check a run's kept states (duplicates, missing steps, distances, NaN)."""

from linpath.cli import common
from linpath.cli.registry import Command
from linpath.errors import LinpathError


def arguments(p) -> None:
    p.add_argument("run_dir")
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="how far (a share of the largest distance) a later state may lie farther from the final state "
        "than an earlier one (default 0.1)",
    )


def run(args) -> int:
    """One line per finding; exit 1 when there are findings, 0 when the run is clean."""
    from linpath.analysis.audit import DISTANCE_TOLERANCE, audit_run
    from linpath.io.rundir import RunDir

    run_dir = RunDir(common.run_folder(args.run_dir))
    tolerance = DISTANCE_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance >= 0:
        raise LinpathError(f"--tolerance must be a number >= 0, got {args.tolerance}")
    findings = audit_run(run_dir, tolerance=tolerance)
    for finding in findings:
        print(f"{finding.kind}: {finding.message}")
    states = sum(len(run_dir.saved_steps(r)) for r in run_dir.replicates())
    verdict = f"{len(findings)} finding{'s' * (len(findings) != 1)}" if findings else "clean"
    done = len(run_dir.replicates())
    print(
        f"audit: {verdict} ({done} finished replicate{'s' * (done != 1)}, {states} kept states in {run_dir.root})"
    )
    return 1 if findings else 0


COMMAND = Command(
    "audit", "check a run's kept states: duplicates, missing steps, distances, NaN", arguments, run, order=7
)
