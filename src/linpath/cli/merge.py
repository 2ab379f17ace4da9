"""linpath merge: one study from run folders of one spec whose replicates were trained apart."""

from linpath.cli.registry import Command


def arguments(p) -> None:
    p.add_argument(
        "study", help="the study folder to make (or one an earlier merge made, to add replicates to)"
    )
    p.add_argument(
        "runs",
        nargs="+",
        help="run folders of one spec hash (presets, Keeper or callback runs, 'linpath import' runs), each swept; "
        "checkpoints are not copied",
    )
    p.add_argument(
        "--setting",
        action="append",
        default=None,
        help="merge only this sweep setting (a folder name under sweep/; repeatable); "
        "default: every one, which every run must hold",
    )
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="merge sweep settings not every replicate has finished at every t (a killed or running sweep, a "
        "deleted item); the report then states at each t how many replicates it averaged and withholds its verdicts",
    )


def run(args) -> int:
    from linpath.runs.merge import merge_runs

    merged = merge_runs(args.study, args.runs, args.setting, allow_incomplete=args.allow_incomplete)
    for note in merged.notes:
        print(f"note: {note}")
    added = ", ".join(map(str, merged.added)) or "none"
    print(
        f"merged: {merged.study.root}: replicates {', '.join(map(str, merged.replicates))} "
        f"(new: {added}); sweep settings: {', '.join(merged.settings) or 'none'}"
    )
    print(f"next: linpath report {merged.study.root}")
    return 0


COMMAND = Command(
    "merge",
    "one study from run folders of one spec whose replicates were trained apart",
    arguments,
    run,
    order=5,
)
