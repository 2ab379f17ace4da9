"""Verdicts on the paper's claims: measured numbers compared with stated thresholds.

Two cautions are built in: a positive rise_over_start of the loss can come from test-loss
overfitting (the final loss above the loss at t) with no peak inside the path, so barriers are
judged on the error and on the maximum lying strictly inside (0, 1); and rise_over_chord is
large for a path that stays flat and then drops, which is not a barrier.
"""

from __future__ import annotations

import math

import numpy as np

from linpath.analysis.curves import Curves, aggregate
from linpath.analysis.metrics import mean_std
from linpath.config.presets import PaperClaims

# Tolerances of the verdicts (fractions are of the path's loss range f(0) - min f).
MONOTONE_TOLERANCE = 0.01
CONVEX_TOLERANCE = 0.05
BARRIER_THRESHOLD = 0.005  # rise of the test error above the start (0.5 percentage points)
BARRIER_FACTOR = 4  # onset and vanishing are judged within this factor of the paper's steps


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


def barrier_window_matches(
    found: list[int], claimed: tuple[int, int], factor: float = BARRIER_FACTOR
) -> bool:
    """Whether barriers were found from about claimed[0] to about claimed[1] (within `factor`)."""
    if not found:
        return False
    a, b = claimed
    return a / factor <= found[0] <= a * factor and b / factor <= found[-1] <= b * factor


def accuracy_verdict(accuracies: list[float], claims: PaperClaims | None) -> str | None:
    if not accuracies:
        return None
    m, s = mean_std(accuracies)
    if not claims:
        return f"- Final test accuracy {100 * m:.2f} ± {100 * s:.2f} %."
    lo, hi = claims.accuracy
    ok = "CONFIRMED" if lo <= m <= hi else "NOT CONFIRMED"
    return f"- Final test accuracy {100 * m:.2f} ± {100 * s:.2f} % (expected {100 * lo:.1f}–{100 * hi:.1f} %): **{ok}**."


def from_init_verdicts(curves: Curves, rows: list[dict], claims: PaperClaims | None) -> list[str]:
    """Monotone, roughly convex, and where the loss falls halfway, along the path from t = 0."""
    if 0 not in curves.steps:
        return []
    x, loss, _ = curves.mean_std(0, "loss")
    span = loss[0] - loss.min()
    mono, _ = aggregate(rows, 0, "loss", "monotonicity_gap")
    conv, _ = aggregate(rows, 0, "loss", "convexity_gap")
    emono, _ = aggregate(rows, 0, "error", "monotonicity_gap")
    expect = claims.monotone_from_init if claims else None
    is_mono = mono <= MONOTONE_TOLERANCE * span
    word = (
        ("CONFIRMED" if is_mono == expect else "NOT CONFIRMED")
        if expect is not None
        else ("yes" if is_mono else "no")
    )
    lines = [
        f"- The path from initialization is monotone: loss monotonicity_gap {mono:.4f} "
        f"(tolerance {MONOTONE_TOLERANCE:.0%} of the loss range {span:.3f} = {MONOTONE_TOLERANCE * span:.4f}); "
        f"error monotonicity_gap {emono:.4f}: **{word}**"
        + ("" if expect is None else f" (the paper: {'monotone' if expect else 'not monotone'}).")
    ]
    is_conv = conv <= CONVEX_TOLERANCE * span
    word = ("CONFIRMED" if is_conv else "NOT CONFIRMED") if expect else ("yes" if is_conv else "no")
    lines.append(
        f"- The path from initialization is roughly convex: loss convexity_gap {conv:.4f} "
        f"(tolerance {CONVEX_TOLERANCE:.0%} of the loss range = {CONVEX_TOLERANCE * span:.4f}): **{word}**."
    )
    half = loss[-1] + 0.5 * (loss[0] - loss[-1])
    x_half = float(x[np.argmax(loss <= half)]) if np.any(loss <= half) else math.nan
    lines.append(
        f"- Along the path from initialization the loss falls halfway to its final value at x = {x_half:.2f}"
        " (for the larger settings the paper reports the loss staying high until close to the optimum, i.e. a value near 1)."
    )
    return lines


def barrier_verdict(curves: Curves, rows: list[dict], claims: PaperClaims | None) -> str:
    found = barrier_steps(curves)
    steps = curves.steps

    def rise(t):
        return aggregate(rows, t, "error", "rise_over_start")[0]

    if found:
        first, last = found[0], found[-1]
        after = [t for t in steps if t > last]
        desc = (
            f"from t = {first} (error rise {rise(first):.4f}) to t = {last} (rise {rise(last):.4f}); "
            f"none from t = {after[0]} on"
            if after
            else f"from t = {first} to the last kept t = {last}"
        )
        measured = f"Barriers (error rise > {BARRIER_THRESHOLD} with the peak inside the path) {desc}"
    else:
        worst = max(steps, key=lambda t: rise(t) if math.isfinite(rise(t)) else -1)
        measured = (
            f"No barrier at any t (error rise > {BARRIER_THRESHOLD} with the peak inside the path); "
            f"largest error rise {rise(worst):.4f} at t = {worst}"
        )
    if claims is None:
        return f"- {measured}."
    if claims.barriers is None:
        return f"- {measured}: **{'CONFIRMED' if not found else 'NOT CONFIRMED'}** (the paper: no barriers on this setting)."
    a, b = claims.barriers
    ok = barrier_window_matches(found, claims.barriers)
    return (
        f"- {measured}: **{'CONFIRMED' if ok else 'NOT CONFIRMED'}** (the paper: from about t = {a}, gone after about t = {b}; "
        f"judged within a factor of {BARRIER_FACTOR})."
    )


def overfitting_note(curves: Curves, rows: list[dict]) -> str:
    last = curves.steps[-1]
    return (
        f"- Loss rise_over_start at the last kept t = {last}: {aggregate(rows, last, 'loss', 'rise_over_start')[0]:.4f}, "
        f"loss at t {aggregate(rows, last, 'loss', 'start_value')[0]:.4f} vs final {aggregate(rows, last, 'loss', 'end_value')[0]:.4f}"
        " (a positive rise with the final loss above the start is test-loss overfitting, not a barrier)."
    )


def verdicts(
    curves: Curves, rows: list[dict], claims: PaperClaims | None, accuracies: list[float]
) -> list[str]:
    """The report's verdict lines, in order."""
    lines = [accuracy_verdict(accuracies, claims)]
    lines += from_init_verdicts(curves, rows, claims)
    lines += [barrier_verdict(curves, rows, claims), overfitting_note(curves, rows)]
    return [line for line in lines if line is not None]
