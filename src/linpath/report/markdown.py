"""report.md: accuracy, figures, the metrics table, and a verdict on each of the paper's claims
(the verdicts themselves are computed in analysis/verdicts.py)."""

from __future__ import annotations

import math

from linpath.analysis.curves import Curves, aggregate
from linpath.analysis.verdicts import verdicts
from linpath.config.presets import PaperClaims
from linpath.config.spec import Spec
from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.train.log import read_log


def _fmt(mean: float, std: float, digits: int = 4) -> str:
    if not math.isfinite(mean):
        return str(mean)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def final_accuracies(run: RunDir, replicates: list[int]) -> list[float]:
    out = []
    for r in replicates:
        log = read_log(run, r)
        if log:
            out.append(float(log[-1]["test_accuracy"]))
    return out


def metrics_table(curves: Curves, rows: list[dict]) -> list[str]:
    out = [
        "| t | loss rise_over_start | loss argmax x | error rise_over_start | error argmax x | error rise_over_chord | loss monotonicity_gap |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in curves.steps:
        cells = [
            _fmt(*aggregate(rows, t, "loss", "rise_over_start")),
            f"{aggregate(rows, t, 'loss', 'argmax_x')[0]:.2f}",
            _fmt(*aggregate(rows, t, "error", "rise_over_start")),
            f"{aggregate(rows, t, 'error', 'argmax_x')[0]:.2f}",
            _fmt(*aggregate(rows, t, "error", "rise_over_chord")),
            _fmt(*aggregate(rows, t, "loss", "monotonicity_gap")),
        ]
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    return out


def write_report(
    run: RunDir,
    spec: Spec,
    curves: Curves,
    rows: list[dict],
    figures: list,
    claims: PaperClaims | None,
    title: str,
) -> None:
    n = len(curves.replicates)
    lines = [
        f"# linpath report: {title}",
        "",
        f"Run `{run.root.name}`: {n} replicate{'s' * (n != 1)} (seeds {', '.join(str(spec.train.seed + r) for r in curves.replicates)}), "
        f"training {spec.train.training_steps}, {len(curves.steps)} starting steps, "
        f"{len(curves.at(curves.steps[0])[0]['x'])} points per path, split `{curves.split}`, BatchNorm policy `{curves.bn}`.",
        "",
        "## Verdicts on the paper's claims",
        "",
        *verdicts(curves, rows, claims, final_accuracies(run, curves.replicates)),
        "",
        "## Figures",
        "",
    ]
    for f in figures:
        if f.suffix == ".png":
            lines += [f"![{f.stem}](figures/{f.name})", ""]
    lines += [
        "## Path metrics (mean ± std over replicates)",
        "",
        "Definitions in the README; every metric per replicate is in `metrics.csv`.",
        "",
        *metrics_table(curves, rows),
        "",
    ]
    atomic_write_text(run.report, "\n".join(lines))
