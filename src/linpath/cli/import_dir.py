"""linpath import: folders of checkpoints (step-<t>.pt, Hugging Face checkpoint-<t>/) as a run
folder, or a checkpoint grid addressed by revision (hf://ORG/NAME, a folder of revisions)."""

from linpath.cli.registry import Command


def arguments(p) -> None:
    p.add_argument(
        "sources",
        nargs="+",
        help="one folder per replicate; or one checkpoint grid: hf://ORG/NAME (its revisions step0, step1, ...) "
        "or a folder of revisions (step0/, step1000/, ..., each a model folder)",
    )
    p.add_argument(
        "--pattern",
        default=None,
        help="the files or folders and their step t: a template such as 'step-{t}.pt' or 'epoch=*-step={t}.ckpt' "
        "(* within a name), or a regular expression with (?P<t>...); default: Hugging Face checkpoint-{t}/ folders",
    )
    p.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")
    p.add_argument("--key", default=None, help="dotted path to the state dict inside each checkpoint")
    g = p.add_argument_group(
        "checkpoint grids (hf://ORG/NAME or a folder of revisions; docs/checkpoint_grids.md)"
    )
    g.add_argument(
        "--revisions",
        default="paper",
        help="paper (the paper's grid up to the last published step), all, or step0,step16,... (default paper)",
    )
    g.add_argument(
        "--replicate-pattern",
        default=None,
        help="the other replicates' sources with {r} = 1, 2, ... (SOURCE is replicate 0), "
        "e.g. 'EleutherAI/pythia-70m-seed{r}'",
    )
    g.add_argument("--replicates", type=int, default=None, help="replicates in all, SOURCE included")
    g.add_argument(
        "--copy", action="store_true", help="copy the revisions' files into the run, checked by sha256"
    )
    g.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="also fetch a repository's own model code (*.py), which building the model then runs (never by default)",
    )


def run(args) -> int:
    from linpath.runs.import_dir import import_folders
    from linpath.runs.import_grid import import_grid, is_grid_source

    if len(args.sources) == 1 and is_grid_source(args.sources[0]):
        return _grid(args, import_grid)
    run_dir, notes = import_folders(args.sources, args.out, args.pattern, args.key)
    for note in notes:
        print(f"note: {note}")
    print(f"imported: {run_dir.root}")
    print(
        f"next: linpath sweep {run_dir.root} --model module:callable --data DATA && linpath report {run_dir.root}"
    )
    return 0


def _grid(args, import_grid) -> int:
    """A checkpoint grid: the revisions referenced (or copied), their files' sha256 recorded."""
    run_dir, notes = import_grid(
        args.sources[0], args.out, args.revisions, args.replicate_pattern, args.replicates, args.copy,
        trust_remote_code=args.trust_remote_code,
    )  # fmt: skip
    for note in notes:
        print(f"note: {note}")
    print(f"imported: {run_dir.root}")
    print(
        f"next: linpath audit {run_dir.root}, then linpath sweep {run_dir.root} --task causal-lm --data TEXT.jsonl "
        "--tokenizer bytes|module:callable"
    )
    return 0


COMMAND = Command(
    "import",
    "folders of checkpoints (step-<t>.pt, checkpoint-<t>/) or a checkpoint grid (hf://ORG/NAME) as a run folder",
    arguments,
    run,
    order=21,
)
