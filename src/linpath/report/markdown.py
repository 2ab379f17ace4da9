"""report.md: per sweep setting (the paper's first), the verdicts on the paper's claims, the
figures and the metrics table. The numbers come from analysis/; this module only renders."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linpath.analysis.coverage import count_text, expected_replicates, incomplete_text
from linpath.analysis.curves import PAPER_SETTING, Curves
from linpath.analysis.intervals import aggregate
from linpath.analysis.plane import read_surface
from linpath.analysis.verdicts import pm
from linpath.config.external import is_external
from linpath.config.spec import Spec
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.rundir import OutDir, RunDir
from linpath.report.notes import running_notes
from linpath.report.origins import grid_sentence, origin_lines


@dataclass
class Section:
    """One sweep setting's results, ready to render."""

    curves: Curves
    summary: list[dict]
    verdicts: list[str]
    figures: list[Path]
    decisions: list[str] = field(
        default_factory=list
    )  # barrier onset, vanishing, equivalence (decisions.csv)


def _decision_block(section: Section) -> list[str]:
    """The setting's barrier decisions with their statistics (analysis/decisions.py), if any."""
    if not section.decisions:
        return []
    head = (
        "Barrier decisions (error rise above both ends; 95 % t intervals over replicates; "
        f"equivalence by two one-sided tests; decisions.csv in results/{section.curves.setting}/):"
    )
    return ["", head, "", *section.decisions]


def describe(curves: Curves) -> str:
    """The setting in words."""
    n = len(curves.at(curves.steps[0])[0]["x"])
    unit = "sequences" if curves.is_lm else "examples"
    subset = (
        f"a stratified subset of {curves.examples} {unit}"
        if "-n" in curves.setting
        else f"all {curves.examples} {unit}"
    )
    _, found, params = curves.setting.partition("-params[")
    moved = ""
    if found:
        spec, _, hold = params.rpartition("]-hold")
        moved = f", only the parameters `{spec}` moved (the others held at the {hold})"
    replicates = len(expected_replicates(curves))
    missing = incomplete_text(curves)
    return (
        f"split `{curves.split}` ({subset}), BatchNorm `{curves.bn}`{moved}, {n} points per path, "
        f"{len(curves.steps)} starting steps, {replicates} replicate{'s' * (replicates != 1)}"
        + (f" (incomplete: {missing})" if missing else "")
    )


def _cell(summary: list[dict], t: int, q: str, metric: str) -> str:
    mean, std = aggregate(summary, t, q, metric), aggregate(summary, t, q, metric, "std")
    lo, hi = aggregate(summary, t, q, metric, "ci_low"), aggregate(summary, t, q, metric, "ci_high")
    text = pm(mean, std).replace(" (± n/a: one replicate)", "")
    return text + (f" [{lo:.4f}, {hi:.4f}]" if math.isfinite(lo) and hi > lo else "")


def metrics_table(curves: Curves, summary: list[dict]) -> list[str]:
    """The metrics per t; a t that holds fewer replicates than the setting says how many
    (analysis/coverage.py: a grid's seed that lacks a revision, an unfinished sweep)."""
    out = [
        "| t | loss rise above start | loss peak x (median) | error rise above start [95 % interval] | "
        "error peak x (median) | error rise above chord | loss monotonicity gap |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in curves.steps:
        cells = [
            _cell(summary, t, "loss", "rise_over_start"),
            f"{aggregate(summary, t, 'loss', 'argmax_x', 'median'):.2f}",
            _cell(summary, t, "error", "rise_over_start"),
            f"{aggregate(summary, t, 'error', 'argmax_x', 'median'):.2f}",
            _cell(summary, t, "error", "rise_over_chord"),
            _cell(summary, t, "loss", "monotonicity_gap"),
        ]
        short = count_text(curves, t)
        out.append(f"| {t}{f' ({short})' if short else ''} | " + " | ".join(cells) + " |")
    return out


def bits_table(curves: Curves, summary: list[dict]) -> list[str]:
    """A language model's bits per byte along each path: start, end, largest value, rise."""
    out = [
        "| t | bits per byte at t | at the end | largest on the path | rise above start [95 % interval] | replicates |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for t in curves.steps:
        n = int(aggregate(summary, t, "bits_per_byte", "rise_over_start", "replicates"))
        cells = [_cell(summary, t, "bits_per_byte", v) for v in ("start_value", "end_value", "max_value")]
        cells += [_cell(summary, t, "bits_per_byte", "rise_over_start"), str(n)]
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    return out


def section_lines(run: RunDir, section: Section) -> list[str]:
    c = section.curves
    paper = " (the paper's setting)" if c.setting == PAPER_SETTING else ""
    lines = [
        f"## Sweep setting `{c.setting}`{paper}",
        "",
        f"{describe(c)}. Its tables: "
        f"`results/{c.setting}/` (paths.csv, metrics.csv per replicate, summary.csv).",
        "",
        *origin_lines(run, expected_replicates(c)),
        "### Verdicts on the paper's claims",
        "",
        *section.verdicts,
        *_decision_block(section),
        "",
        "### Figures",
        "",
    ]
    for f in section.figures:
        if f.suffix == ".png":
            lines += [f"![{f.stem}]({f.relative_to(run.root).as_posix()})", ""]
    spread = "mean ± std over replicates" if len(expected_replicates(c)) > 1 else "one replicate"
    lines += [
        f"### Path metrics ({spread}; 95 % bootstrap interval over replicates and evaluation examples)",
        "",
        "Definitions in the README.",
        "",
        *metrics_table(c, section.summary),
        "",
    ]
    if c.is_lm:
        lines += [
            "The loss is the mean next-token cross-entropy per token (nats), the error the next-token "
            "error; bits per byte are the nats of the text over its UTF-8 bytes, / ln 2.",
            "",
            "### Bits per byte",
            "",
            *bits_table(c, section.summary),
            "",
        ]
    return lines


def _lowest(surface, quantity: str) -> str:
    values = getattr(surface, quantity)
    if values is None or not np.isfinite(values).any():
        return f"no finite {quantity}"
    i, j = divmod(int(np.nanargmin(values)), values.shape[1])
    return f"lowest {quantity} {values[i, j]:.4f} at (α, β) = ({surface.alpha[j]:.2f}, {surface.beta[i]:.2f})"


def plane_lines(run: RunDir) -> list[str]:
    """A section per finished plane of the run (<run>/plane/<key>/, made by `linpath plane`);
    one still being evaluated, or damaged, is named and left out."""
    folders = run.plane_dirs()
    if not folders:
        return []
    lines = [
        "## Planes",
        "",
        "Each plane is a setting of its own: its states, split, grid, span and precision "
        "name its folder `plane/<key>/` (made by `linpath plane`).",
        "",
    ]
    for folder in folders:
        try:
            surface = read_surface(OutDir(folder).plane_csv)
        except LinpathError as e:
            lines += [f"- `{folder.name}` left out: {e}", ""]
            continue
        n_beta, n_alpha = surface.loss.shape
        lines += [
            f"### Plane `{folder.name}`",
            "",
            f"{n_alpha} × {n_beta} points; {_lowest(surface, 'loss')}; {_lowest(surface, 'error')}.",
            "",
        ]
        if (figure := OutDir(folder).plane_png).is_file():
            lines += [
                f"![plane {folder.name}]({figure.relative_to(run.root).as_posix()})",
                "",
            ]
    return lines


def write_report(run: RunDir, spec: Spec, title: str, sections: list[Section], notes: list[str]) -> Path:
    lines = [f"# linpath report: {title}", "", run_line(run, spec, sections), ""]
    notes = [*running_notes(run), *notes]
    lines += [f"- Note: {n}" for n in notes] + ([""] if notes else [])
    for section in sections:
        lines += section_lines(run, section)
    lines += plane_lines(run)
    atomic_write_text(run.report, "\n".join(lines))
    return run.report


def run_line(run: RunDir, spec: Spec, sections: list[Section]) -> str:
    """The report's first sentence: the run, its training and seeds, how many settings."""
    replicates = expected_replicates(sections[0].curves) if sections else []
    if run.is_grid:
        training = (
            f"{grid_sentence(run)} of `{spec.model_class}`, {spec.total_steps} steps, "
            f"replicates {', '.join(map(str, replicates))}"
        )
    elif is_external(spec):  # kept from the researcher's own training: linpath knows no seeds
        training = (
            f"states kept from your own training of `{spec.model_class}`, {spec.total_steps} steps, "
            f"replicates {', '.join(map(str, replicates))}"
        )
    else:
        training = f"training {spec.train.training_steps}, seeds {', '.join(str(spec.train.seed + r) for r in replicates)}"
    return (
        f"Run `{run.root.name}`: {training}; "
        f"{len(sections)} sweep setting{'s' * (len(sections) != 1)}, each reported on its own."
    )
