"""linpath import: folders of checkpoints (step-<t>.pt, Hugging Face checkpoint-<t>/) as a run folder."""

from linpath.cli.registry import Command


def arguments(p) -> None:
    p.add_argument("sources", nargs="+", help="one folder per replicate")
    p.add_argument(
        "--pattern",
        default=None,
        help="the files or folders and their step t: a template such as 'step-{t}.pt' or 'epoch=*-step={t}.ckpt' "
        "(* within a name), or a regular expression with (?P<t>...); default: Hugging Face checkpoint-{t}/ folders",
    )
    p.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")
    p.add_argument("--key", default=None, help="dotted path to the state dict inside each checkpoint")


def run(args) -> int:
    from linpath.runs.import_dir import import_folders

    run_dir, notes = import_folders(args.sources, args.out, args.pattern, args.key)
    for note in notes:
        print(f"note: {note}")
    print(f"imported: {run_dir.root}")
    print(
        f"next: linpath sweep {run_dir.root} --model module:callable --data DATA && linpath report {run_dir.root}"
    )
    return 0


COMMAND = Command(
    "import",
    "folders of checkpoints (step-<t>.pt, checkpoint-<t>/) as a run folder",
    arguments,
    run,
    order=21,
)
