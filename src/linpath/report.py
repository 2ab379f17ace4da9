"""report.md: accuracy, figures, the metrics table, and a verdict on each of the paper's claims.

The verdicts are measured numbers compared with stated thresholds, so the report can confirm
or refute the paper. Two cautions are built in: a positive rise_over_start of the loss can come
from test-loss overfitting (the final loss above the loss at t) with no peak inside the path,
so barriers are judged on the error and on the maximum lying strictly inside (0, 1); and
rise_over_chord is large for a path that stays flat and then drops, which is not a barrier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .analysis import Curves, aggregate
from .metrics import mean_std
from .store import RunDir, atomic_write_text
from .train import read_log

# Tolerances of the verdicts (fractions are of the path's loss range f(0) - min f).
MONOTONE_TOLERANCE = 0.01
CONVEX_TOLERANCE = 0.05
BARRIER_THRESHOLD = 0.005  # rise of the test error above the start (0.5 percentage points)


@dataclass(frozen=True)
class PaperClaims:
    setting: str
    accuracy: tuple[float, float]  # expected range of final test accuracy
    monotone_from_init: bool
    barriers: tuple[int, int] | None  # (appear from about t, vanish after about t), or None


CLAIMS = {
    "mnist_lenet_300_100": PaperClaims("LeNet-300-100 on MNIST", (0.978, 0.984), True, None),
    "cifar_resnet_20": PaperClaims("ResNet-20 on CIFAR-10", (0.90, 0.925), False, (16, 2000)),
    "cifar_vgg_16": PaperClaims("VGG-16 on CIFAR-10", (0.925, 0.945), False, (16, 8000)),
    "imagenet_resnet_50": PaperClaims("ResNet-50 on ImageNet", (0.75, 0.77), False, (256, 50000)),
}


def _fmt(mean: float, std: float, digits: int = 4) -> str:
    if not math.isfinite(mean):
        return str(mean)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def barrier_steps(curves: Curves, threshold: float = BARRIER_THRESHOLD) -> list[int]:
    """Starting steps whose mean error curve rises above its start by more than `threshold`
    with the maximum strictly inside the path."""
    found = []
    for t in curves.steps:
        x, mean, _ = curves.mean_std(t, "error")
        i = int(np.argmax(mean))
        if mean[i] - mean[0] > threshold and 0 < i < len(x) - 1:
            found.append(t)
    return found


def final_accuracies(run: RunDir, replicates: list[int]) -> list[float]:
    out = []
    for r in replicates:
        log = read_log(run, r)
        if log:
            out.append(float(log[-1]["test_accuracy"]))
    return out


def verdicts(run: RunDir, curves: Curves, rows: list[dict], preset: str) -> list[str]:
    claims = CLAIMS.get(preset)
    lines = []
    acc = final_accuracies(run, curves.replicates)
    if acc:
        m, s = mean_std(acc)
        if claims:
            lo, hi = claims.accuracy
            ok = "CONFIRMED" if lo <= m <= hi else "NOT CONFIRMED"
            lines.append(f"- Final test accuracy {100 * m:.2f} ± {100 * s:.2f} % (expected {100 * lo:.1f}–{100 * hi:.1f} %): **{ok}**.")
        else:
            lines.append(f"- Final test accuracy {100 * m:.2f} ± {100 * s:.2f} %.")
    if 0 in curves.steps:
        x, loss, _ = curves.mean_std(0, "loss")
        span = loss[0] - loss.min()
        mono, _ = aggregate(rows, 0, "loss", "monotonicity_gap")
        conv, _ = aggregate(rows, 0, "loss", "convexity_gap")
        emono, _ = aggregate(rows, 0, "error", "monotonicity_gap")
        expect = claims.monotone_from_init if claims else None
        is_mono = mono <= MONOTONE_TOLERANCE * span
        word = ("CONFIRMED" if is_mono == expect else "NOT CONFIRMED") if expect is not None else ("yes" if is_mono else "no")
        lines.append(
            f"- The path from initialization is monotone: loss monotonicity_gap {mono:.4f} "
            f"(tolerance {MONOTONE_TOLERANCE:.0%} of the loss range {span:.3f} = {MONOTONE_TOLERANCE * span:.4f}); "
            f"error monotonicity_gap {emono:.4f}: **{word}**"
            + ("" if expect is None else f" (the paper: {'monotone' if expect else 'not monotone'}).")
        )
        is_conv = conv <= CONVEX_TOLERANCE * span
        word = ("CONFIRMED" if is_conv else "NOT CONFIRMED") if expect else ("yes" if is_conv else "no")
        lines.append(
            f"- The path from initialization is roughly convex: loss convexity_gap {conv:.4f} "
            f"(tolerance {CONVEX_TOLERANCE:.0%} of the loss range = {CONVEX_TOLERANCE * span:.4f}): **{word}**."
        )
        half = loss[-1] + 0.5 * (loss[0] - loss[-1])
        x_half = float(x[np.argmax(loss <= half)]) if np.any(loss <= half) else math.nan
        lines.append(f"- Along the path from initialization the loss falls halfway to its final value at x = {x_half:.2f}"
                     " (for the larger settings the paper reports the loss staying high until close to the optimum, i.e. a value near 1).")
    found = barrier_steps(curves)
    steps = curves.steps
    def rise(t):
        return aggregate(rows, t, "error", "rise_over_start")[0]
    if found:
        first, last = found[0], found[-1]
        after = [t for t in steps if t > last]
        desc = (f"from t = {first} (error rise {rise(first):.4f}) to t = {last} (rise {rise(last):.4f}); "
                f"none from t = {after[0]} on" if after else f"from t = {first} to the last kept t = {last}")
        measured = f"Barriers (error rise > {BARRIER_THRESHOLD} with the peak inside the path) {desc}"
    else:
        worst = max(steps, key=lambda t: rise(t) if math.isfinite(rise(t)) else -1)
        measured = (f"No barrier at any t (error rise > {BARRIER_THRESHOLD} with the peak inside the path); "
                    f"largest error rise {rise(worst):.4f} at t = {worst}")
    if claims is None:
        lines.append(f"- {measured}.")
    elif claims.barriers is None:
        lines.append(f"- {measured}: **{'CONFIRMED' if not found else 'NOT CONFIRMED'}** (the paper: no barriers on this setting).")
    else:
        a, b = claims.barriers
        ok = bool(found) and found[0] <= 4 * a and found[0] >= a / 4 and found[-1] <= 4 * b and found[-1] >= b / 4
        lines.append(f"- {measured}: **{'CONFIRMED' if ok else 'NOT CONFIRMED'}** (the paper: from about t = {a}, gone after about t = {b}; "
                     "judged within a factor of 4).")
    lines.append(f"- Loss rise_over_start at the last kept t = {steps[-1]}: {aggregate(rows, steps[-1], 'loss', 'rise_over_start')[0]:.4f}, "
                 f"loss at t {aggregate(rows, steps[-1], 'loss', 'start_value')[0]:.4f} vs final {aggregate(rows, steps[-1], 'loss', 'end_value')[0]:.4f}"
                 " (a positive rise with the final loss above the start is test-loss overfitting, not a barrier).")
    return lines


def metrics_table(curves: Curves, rows: list[dict]) -> list[str]:
    out = ["| t | loss rise_over_start | loss argmax x | error rise_over_start | error argmax x | error rise_over_chord | loss monotonicity_gap |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
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


def write_report(run: RunDir, curves: Curves, rows: list[dict], figures: list, preset: str, title: str) -> None:
    spec = run.read_spec()
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
        *verdicts(run, curves, rows, preset),
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
