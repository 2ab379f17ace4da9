"""linpath plane: loss and error on the plane through three saved states, or around one."""

import re

from linpath.cli import common
from linpath.cli.registry import Command
from linpath.sweep.setting import SETTING_FIELDS, SweepSetting


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
    g = p.add_argument_group("evaluation setting (as 'linpath sweep'; a plane takes these two)")
    SweepSetting.add_flags(g, omit=tuple(f for f in SETTING_FIELDS if f not in ("split", "precision")))
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
    """Strings to objects (api/resolve.py), then the plane folder (api/planes.py). Under torchrun
    the rows are shared among the ranks (each its own GPU); rank 0 draws the figure and prints."""
    from linpath.api.planes import PlaneOptions, write_plane_folder
    from linpath.api.resolve import PlaneArgs, parse_pair, plane_inputs
    from linpath.runtime import distributed
    from linpath.sweep.grids import Grid

    grid, span = parse_pair(args.grid, int, "--grid"), parse_pair(args.span, float, "--span")
    world = distributed.init(args.device)
    options = PlaneOptions(
        grid, span, args.seed, SweepSetting.from_args(args, grid=Grid()), world.device(args.device), args.batch_size,
        args.allow_nonfinite, (world.rank, world.size),
    )  # fmt: skip
    plane_args = PlaneArgs(
        tuple(args.states), args.model, args.data, args.num_classes, args.data_root, args.out, args.replicate,
        args.other_replicate, args.at,
    )  # fmt: skip
    surface, files = write_plane_folder(plane_inputs(plane_args, options), options)
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
