"""linpath import-openlth: an OpenLTH run folder as a linpath run folder."""

from linpath.cli.registry import Command


def arguments(p) -> None:
    p.add_argument("source", help="an OpenLTH train_<hash> folder, or one replicate_<N>/main folder")
    p.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")
    p.add_argument(
        "--iterations-per-epoch",
        type=int,
        default=None,
        help="override OpenLTH's ceil(training examples / batch size)",
    )


def run(args) -> int:
    from linpath.runs.openlth import import_run

    run_dir, notes = import_run(args.source, args.out, args.iterations_per_epoch)
    for note in notes:
        print(f"note: {note}")
    print(f"imported: {run_dir.root}")
    print(f"next: linpath sweep {run_dir.root} && linpath report {run_dir.root}")
    return 0


COMMAND = Command(
    "import-openlth", "import an OpenLTH run folder as a linpath run folder", arguments, run, order=20
)
