"""What several commands share: their flag groups (the same names, defaults and parsing on
every command) and the stage calls they make with them."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path

from linpath.analysis.metrics import HEIGHTS
from linpath.config.presets import preset
from linpath.config.spec import DataSpec, ModelSpec, TrainSpec, override_fields
from linpath.errors import LinpathError
from linpath.sweep.setting import STREAM_FIELDS, SweepSetting, parse_steps

# Spec fields whose flag says more than the field's name: training's precision is
# --train-precision, evaluation's --eval-precision, everywhere.
FLAG_NAMES = {"precision": "train-precision"}
BATCH_HELP = (
    "evaluation batch size (default on a CPU: 2000 for fully connected nets, 256 for convnets; "
    "on CUDA 10000 and 1024)"
)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _replicate_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected replicate numbers separated by commas, got {text!r}"
        ) from None
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"expected replicate numbers >= 0, got {text!r}")
    return ids


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding mnist/, cifar10/, imagenet/ (default $LINPATH_DATA or ~/.cache/linpath/data)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_threads(p: argparse.ArgumentParser) -> None:
    """--threads, on every command (main applies it before any tensor work: runtime/threads.py)."""
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default $LINPATH_THREADS, else $OMP_NUM_THREADS, else the CPUs "
        "this process may use: its affinity and CPU quota, shared among torchrun's local ranks)",
    )


def add_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")


def add_overrides(p: argparse.ArgumentParser) -> None:
    """The spec's fields as flags (they enter spec.json and the run's hash), and the replicates."""
    g = p.add_argument_group("overrides of the preset (they enter spec.json and the run's hash)")
    hints = {
        **typing.get_type_hints(DataSpec),
        **typing.get_type_hints(ModelSpec),
        **typing.get_type_hints(TrainSpec),
    }
    for f in override_fields():
        kind = hints[f.name]
        g.add_argument(
            "--" + FLAG_NAMES.get(f.name, f.name.replace("_", "-")),
            dest=f.name,
            default=None,
            type=_bool if kind is bool else kind,
            metavar=kind.__name__.upper(),
            help=f.metadata["help"],
        )
    g.add_argument(
        "--replicates", type=int, default=None, help="number of replicates (seeds seed..seed+R-1); default 3"
    )
    g.add_argument(
        "--replicate",
        dest="only",
        type=_replicate_ids,
        default=None,
        help="train only these replicates, e.g. 2 or 0,2 (one per machine; 'linpath merge' combines the runs)",
    )


def spec_from(args):
    """The preset with the command line's overrides."""
    overrides = {f.name: getattr(args, f.name) for f in override_fields()}
    overrides["replicates"] = args.replicates
    return preset(args.preset).with_overrides(overrides)


def add_evaluation_options(g, omit: tuple[str, ...] = (), **defaults) -> None:
    """A sweep setting's flags (sweep/setting.py) but those in `omit`, and --allow-nonfinite."""
    SweepSetting.add_flags(g, omit, **defaults)
    g.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="evaluate checkpoints holding NaN or inf (refused by default, naming the tensor)",
    )


def add_sweep_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sweep")
    add_evaluation_options(g, omit=STREAM_FIELDS)  # a run's sweep: preloaded evaluation only
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the evaluated network (convnets: about "
        "1.3x faster in fp32 after a one-off compilation of ~30-60 s; worth it for long sweeps)",
    )
    g.add_argument(
        "--from-steps", default=None, help="starting iterations t, e.g. 0,16,1024 (default: every kept t)"
    )
    g.add_argument(
        "--allow-duplicates",
        action="store_true",
        help="sweep even when the audit finds states kept twice (byte-identical or equal files; see 'linpath audit')",
    )


def add_text_options(g) -> None:
    """How a text file (.jsonl, .txt) becomes a causal language model's blocks of tokens."""
    g.add_argument(
        "--tokenizer",
        default=None,
        help="bytes (UTF-8 bytes as ids) or module:callable / file.py:callable mapping a text to token ids",
    )
    g.add_argument(
        "--seq-len",
        type=int,
        default=None,
        help="tokens per block (default: the model's maximum positions, at most 1024)",
    )
    g.add_argument("--text-field", default="text", help="a .jsonl record's text field (default text)")


def add_tensorboard(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard scalars to RUN/tensorboard/ (per-epoch training curves, path "
        "metrics against t); the run keeps them on once asked (needs linpath[tb])",
    )


def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metric",
        choices=HEIGHTS,
        default="rise_over_start",
        help="the metric of Figure 3 (default rise_over_start, the paper's)",
    )
    p.add_argument(
        "--delta",
        type=float,
        default=None,
        help="the barrier decisions' equivalence margin: 'no barrier larger than DELTA' in error units "
        "(default 0.005, the verdicts' barrier threshold)",
    )
    add_tensorboard(p)


def run_folder(text: str) -> Path:
    """A run folder given on the command line; one line when there is none."""
    if not Path(text).is_dir():
        raise LinpathError(f"no run folder at {text}")
    return Path(text)


def sweep_options(args, world, inputs=None):
    """The sweep's options from the command line (`inputs`: an external run's --model and
    --data), for sweep, run and the per-layer mode."""
    from linpath.sweep.run import SweepOptions

    return SweepOptions(
        data_root=args.data_root,
        device=args.device,
        from_steps=parse_steps(args.from_steps),
        progress=not args.quiet,
        world=world,
        compile=args.compile,
        allow_nonfinite=args.allow_nonfinite,
        allow_duplicates=args.allow_duplicates,
        inputs=inputs,
        allow_findings=getattr(args, "allow_findings", False),
        fetch_audit=getattr(args, "fetch_audit", False),
    )


def print_report(report: Path) -> None:
    """Where the report stage wrote report.md (`report`) and its interactive page."""
    from linpath.io.rundir import RunDir

    run = RunDir(report.parent)
    print(f"report: {run.report} (interactive: {run.report_html})")
