"""linpath plane: loss and error on the plane through three saved states, or around one."""

import re
from pathlib import Path

from linpath.cli import common
from linpath.cli.registry import Command
from linpath.runtime.device import PRECISIONS


def arguments(p) -> None:
    p._negative_number_matcher = re.compile(r"^-\d*\.?\d+(,-?\d*\.?\d+)*$")  # "--span -0.5,1.5" is a value
    p.add_argument(
        "states",
        nargs="+",
        help="three state files ORIGIN A B (at (0,0), (1,0), (0,1)), one CENTER with --seed, or one "
        "run folder (with --replicate and --other-replicate or --at; with --seed the center is the "
        "replicate's final state, or its state at --at)",
    )
    p.add_argument("--model", default=None, help="as for 'linpath path' (default: the run folder's)")
    p.add_argument("--data", default=None, help="as for 'linpath path' (default: the run folder's)")
    p.add_argument(
        "--num-classes", type=int, default=None, help="classes of a named model (default: the data's)"
    )
    p.add_argument(
        "--replicate", type=int, default=0, help="run folder: the replicate whose init and final span it"
    )
    p.add_argument(
        "--other-replicate", type=int, default=None, help="run folder: third state, this one's final"
    )
    p.add_argument(
        "--at", default=None, help="run folder: third state, the replicate's state at T (e.g. 100, 2ep)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="a plane around one state along two random filter-normalized directions (Li et al. 2018) "
        "drawn with this seed, instead of the plane through three states",
    )
    p.add_argument("--grid", default="21", help="points per side, N or N_ALPHA,N_BETA (default 21)")
    p.add_argument("--span", default="-0.5,1.5", help="range of α and β, LO,HI (default -0.5,1.5)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument(
        "--eval-precision", choices=PRECISIONS, default="fp32", help="evaluation arithmetic (default fp32)"
    )
    p.add_argument("--batch-size", type=int, default=None, help=common.BATCH_HELP)
    p.add_argument("--allow-nonfinite", action="store_true", help="evaluate states holding NaN or inf")
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default plane-out/, or the setting's own <run>/plane/<key>/); "
        "a rerun of the same plane there resumes it",
    )
    common.add_common(p)


def run(args) -> int:
    """Under torchrun the rows are shared among the ranks (each its own GPU); rank 0 draws the
    figure and prints."""
    from linpath.runs.plane import PlaneOptions, parse_pair, plane_between_files, plane_of_run
    from linpath.runtime import distributed

    grid, span = parse_pair(args.grid, int, "--grid"), parse_pair(args.span, float, "--span")
    world = distributed.init(args.device)
    options = PlaneOptions(
        grid=grid,
        span=span,
        split=args.split,
        device=world.device(args.device),
        precision=args.eval_precision,
        batch_size=args.batch_size,
        allow_nonfinite=args.allow_nonfinite,
        seed=args.seed,
        shard=(world.rank, world.size),
    )
    if len(args.states) == 1 and Path(args.states[0]).is_dir():
        surface, files = plane_of_run(
            args.states[0], args.replicate, args.other_replicate, args.at, options, args.out, args.data_root,
            args.model, args.data,
        )  # fmt: skip
    else:
        out = args.out or "plane-out"
        surface, files = plane_between_files(
            args.states, args.model, args.data, out, options, args.data_root, args.num_classes
        )
    if world.is_main:
        _print_plane(surface, files)
    return 0


def _print_plane(surface, files) -> None:
    """Where loss and error are lowest, and the files written."""
    import numpy as np

    for quantity in ("loss", "error"):
        values = getattr(surface, quantity)
        if values is not None and np.isfinite(values).any():
            i, j = divmod(int(np.nanargmin(values)), values.shape[1])
            print(
                f"{quantity}: min {values[i, j]:.4f} at α = {surface.alpha[j]:.3f}, β = {surface.beta[i]:.3f}"
            )
    print(f"wrote: {', '.join(str(f) for f in files)}")


COMMAND = Command(
    "plane",
    "loss and error on the plane through three saved states, or around one (--seed)",
    arguments,
    run,
    order=11,
)
