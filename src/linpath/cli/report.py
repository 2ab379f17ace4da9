"""linpath report: report.md and report.html, each sweep setting's tables and figures."""

from linpath.cli import common
from linpath.cli.registry import Command


def arguments(p) -> None:
    p.add_argument("run_dir")
    p.add_argument(
        "--setting",
        action="append",
        default=None,
        help="report only this sweep setting (a folder name under sweep/; repeatable); default: every one",
    )
    common.add_report_options(p)
    p.add_argument(
        "--quiet", action="store_true", help="accepted as on every command (report shows no progress)"
    )


def run(args) -> int:
    from linpath.runs import stages

    common.run_folder(args.run_dir)
    common.print_report(stages.report(args.run_dir, args.metric, args.setting, args.tensorboard, args.delta))
    return 0


COMMAND = Command(
    "report",
    "report.md, and each sweep setting's tables and figures in results/<setting>/",
    arguments,
    run,
    order=4,
)
