"""Verdicts on the paper's claims: measured numbers compared with stated thresholds.

Each verdict is CONFIRMED, NOT CONFIRMED, or "not applicable" where the run cannot judge the
claim (a shortened schedule cannot confirm a final accuracy). Two cautions are built in: a
positive rise_over_start of the loss can come from test-loss overfitting (the final loss above
the loss at t) with no peak inside the path, so barriers are judged on the error and on the
maximum lying strictly inside (0, 1); and rise_over_chord is large for a path that stays flat
and then drops, which is not a barrier.
"""

from __future__ import annotations

import math
import re

import numpy as np

from linpath.analysis.coverage import incomplete_text
from linpath.analysis.curves import Curves
from linpath.analysis.intervals import aggregate
from linpath.analysis.metrics import peak_place
from linpath.config.presets import PaperClaims

# Tolerances of the verdicts (fractions are of the path's loss range f(0) - min f).
MONOTONE_TOLERANCE = 0.01
CONVEX_TOLERANCE = 0.05
BARRIER_THRESHOLD = 0.005  # rise of the test error above the start (0.5 percentage points)
BARRIER_FACTOR = 4  # onset and vanishing are judged within this factor of the paper's steps


def pm(mean: float, std: float, digits: int = 4, scale: float = 1.0) -> str:
    """'mean ± std', or 'mean (one replicate: no spread)' where the std is not defined."""
    if not math.isfinite(mean):
        return str(mean)
    if not math.isfinite(std):
        return f"{scale * mean:.{digits}f} (± n/a: one replicate)"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def barrier_steps(curves: Curves, threshold: float = BARRIER_THRESHOLD) -> list[int]:
    """Starting steps whose mean error curve rises above its start by more than `threshold`
    with the maximum strictly inside the path."""
    found = []
    for t in curves.steps:
        _, mean, _ = curves.mean_std(t, "error")
        if np.max(mean) - mean[0] > threshold and peak_place(mean) == "inside":
            found.append(t)
    return found


def barrier_window(found: list[int]) -> tuple[int, int] | None:
    """(first, last) starting step with a barrier, or None."""
    return (found[0], found[-1]) if found else None


def barrier_window_matches(
    found: list[int], claimed: tuple[int, int], factor: float = BARRIER_FACTOR
) -> bool:
    """Whether barriers were found from about claimed[0] to about claimed[1] (within `factor`)."""
    window = barrier_window(found)
    if window is None:
        return False
    (first, last), (a, b) = window, claimed
    return a / factor <= first <= a * factor and b / factor <= last <= b * factor


def onset_bracket(steps: list[int], found: list[int], summary: list[dict]) -> str:
    """Where the barrier appears, as an interval: the last t before the first barrier and the
    first barrier t, each with the 95 % interval of its error rise."""
    first = found[0]
    before = [t for t in steps if t < first]

    def ci(t):
        lo, hi = (
            aggregate(summary, t, "error", "rise_over_start", "ci_low"),
            aggregate(summary, t, "error", "rise_over_start", "ci_high"),
        )
        return f"[{lo:.4f}, {hi:.4f}]"

    if not before:
        return f"at the first swept t = {first} (error rise 95 % interval {ci(first)})"
    return f"between t = {before[-1]} (rise {ci(before[-1])}) and t = {first} (rise {ci(first)})"


def accuracy_verdict(accuracies: list[float], claims: PaperClaims | None, training_steps: str) -> str | None:
    if not accuracies:
        return None
    m = float(np.mean(accuracies))
    s = float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else math.nan
    measured = f"Final test accuracy {pm(m, s, 2, 100)} %"
    if not claims:
        return f"- {measured}."
    lo, hi = claims.accuracy
    expected = f"(the paper: {100 * lo:.1f}–{100 * hi:.1f} % after {claims.training_steps})"
    if training_steps != claims.training_steps:
        return f"- {measured} after {training_steps} {expected}: **not applicable** (a shortened schedule)."
    ok = "CONFIRMED" if lo <= m <= hi else "NOT CONFIRMED"
    return f"- {measured} {expected}: **{ok}**."


def from_init_verdicts(curves: Curves, summary: list[dict], claims: PaperClaims | None) -> list[str]:
    """Along the path from t = 0: monotone and roughly convex (the paper's MNIST claim), or the
    loss staying high until close to the optimum, i.e. not convex (its convnet claim)."""
    if 0 not in curves.steps:
        return []
    x, loss, _ = curves.mean_std(0, "loss")
    span = loss[0] - loss.min()
    mono, conv = (aggregate(summary, 0, "loss", m) for m in ("monotonicity_gap", "convexity_gap"))
    emono = aggregate(summary, 0, "error", "monotonicity_gap")
    is_mono, is_conv = mono <= MONOTONE_TOLERANCE * span, conv <= CONVEX_TOLERANCE * span
    convex_claim = claims.monotone_from_init if claims else None  # True: MNIST's; False: the convnets'

    def word(holds: bool, claimed: bool | None) -> str:
        return (
            ("yes" if holds else "no")
            if claimed is None
            else ("CONFIRMED" if holds == claimed else "NOT CONFIRMED")
        )

    tolerance = (
        f"tolerance {MONOTONE_TOLERANCE:.0%} of the loss range {span:.3f} = {MONOTONE_TOLERANCE * span:.4f}"
    )
    mono_word = word(is_mono, True if convex_claim else None)  # the paper claims monotonicity on MNIST only
    lines = [
        f"- The path from initialization is monotone: loss monotonicity gap {mono:.4f} ({tolerance}); "
        f"error monotonicity gap {emono:.4f}: **{mono_word}**."
    ]
    gap = (
        f"loss convexity gap {conv:.4f} (tolerance {CONVEX_TOLERANCE:.0%} of the loss range = "
        f"{CONVEX_TOLERANCE * span:.4f})"
    )
    if convex_claim is False:
        lines.append(
            f"- The loss stays high until close to the optimum (the path is not convex): {gap}: "
            f"**{word(not is_conv, True)}**."
        )
    else:
        lines.append(
            f"- The path from initialization is roughly convex: {gap}: **{word(is_conv, convex_claim)}**."
        )
    half = loss[-1] + 0.5 * (loss[0] - loss[-1])
    x_half = float(x[np.argmax(loss <= half)]) if np.any(loss <= half) else math.nan
    lines.append(
        f"- Along the path from initialization the loss falls halfway to its final value at x = {x_half:.2f}"
        " (the paper reports the loss staying high until close to the optimum on the convnets, a value near 1)."
    )
    return lines


def barrier_verdict(
    curves: Curves, summary: list[dict], claims: PaperClaims | None, training_steps: str = ""
) -> str:
    found = barrier_steps(curves)
    steps = curves.steps

    def rise(t):
        return aggregate(summary, t, "error", "rise_over_start")

    rule = f"error rise > {BARRIER_THRESHOLD} with the peak inside the path"
    if found:
        first, last = found[0], found[-1]
        after = [t for t in steps if t > last]
        gone = f"; none from t = {after[0]} on" if after else " (the last kept t)"
        measured = (
            f"Barriers ({rule}) from t = {first} (error rise {rise(first):.4f}) to t = {last} "
            f"(rise {rise(last):.4f}){gone}; they appear {onset_bracket(steps, found, summary)}"
        )
    else:
        worst = max(steps, key=lambda t: rise(t) if math.isfinite(rise(t)) else -1)
        measured = f"No barrier at any t ({rule}); largest error rise {rise(worst):.4f} at t = {worst}"
    if claims is None:
        return f"- {measured}."
    if claims.barriers is None:
        word = "CONFIRMED" if not found else "NOT CONFIRMED"
        return f"- {measured}: **{word}** (the paper: no barriers on this setting)."
    a, b = claims.barriers
    word = "CONFIRMED" if barrier_window_matches(found, claims.barriers) else "NOT CONFIRMED"
    if training_steps and training_steps != claims.training_steps:
        word = "not applicable"  # the window is the full schedule's: a shortened run moves it
    return (
        f"- {measured}: **{word}** (the paper: from about t = {a}, gone after about t = {b} of "
        f"{claims.training_steps}; judged within a factor of {BARRIER_FACTOR})."
    )


def overfitting_note(curves: Curves, summary: list[dict]) -> str | None:
    """Said only where it applies: the loss ends above its start with no peak inside the path."""
    last = curves.steps[-1]
    start, end = (
        aggregate(summary, last, "loss", "start_value"),
        aggregate(summary, last, "loss", "end_value"),
    )
    peak_x = aggregate(summary, last, "loss", "argmax_x", "median")
    if not (end > start and peak_x == curves.at(last)[0]["x"][-1]):
        return None
    rise = aggregate(summary, last, "loss", "rise_over_start")
    return (
        f"- From the last kept t = {last} the loss rises by {rise:.4f} with its maximum at the end (loss at t "
        f"{start:.4f}, final {end:.4f}): test-loss overfitting late in training, not a barrier."
    )


def verdicts(
    curves: Curves,
    summary: list[dict],
    claims: PaperClaims | None,
    accuracies: list[float],
    training_steps: str,
) -> list[str]:
    """The report's verdict lines, in order; those judged on the paths are withheld where the
    setting is incomplete (analysis/coverage.py): their numbers are shown, not judged."""
    paths = from_init_verdicts(curves, summary, claims)
    paths += [barrier_verdict(curves, summary, claims, training_steps), overfitting_note(curves, summary)]
    paths = [line for line in paths if line is not None]
    missing = incomplete_text(curves)
    if missing:
        paths = [
            f"- **Verdicts withheld**: this setting is incomplete ({missing}); finish its sweep and "
            "report again.",
            *(_WORD.sub("**withheld** (incomplete setting)", line) for line in paths),
        ]
    first = accuracy_verdict(accuracies, claims, training_steps)
    return ([first] if first is not None else []) + paths


_WORD = re.compile(r"\*\*(CONFIRMED|NOT CONFIRMED|not applicable|yes|no)\*\*")
