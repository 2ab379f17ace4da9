"""The verdict logic, the barrier onset/vanish window and the aggregation over replicates,
on hand-made curves whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from linpath.analysis.curves import Curves, metric_rows
from linpath.analysis.intervals import aggregate, bootstrap_interval, summary_rows
from linpath.analysis.verdicts import (
    accuracy_verdict,
    barrier_steps,
    barrier_verdict,
    barrier_window_matches,
    overfitting_note,
    pm,
)
from linpath.config.presets import claims_of

X = np.linspace(0, 1, 11)


def _curves(errors_by_t: dict[int, list[np.ndarray]], se: float = 0.0) -> Curves:
    c = Curves("test-interpolate-uniform11-fp32", "test", "interpolate", 10000)
    for t, per_replicate in errors_by_t.items():
        for r, err in enumerate(per_replicate):
            loss = 2.0 * err
            c.by_item[(r, t)] = {
                "x": X,
                "loss": loss,
                "error": err,
                "loss_se": np.full(len(X), se),
                "error_se": np.full(len(X), se),
            }
    return c


def bump(height: float, start: float = 0.1, end: float = 0.1) -> np.ndarray:
    """A straight line from start to end plus a bump of `height` at x = 0.5."""
    return start + (end - start) * X + height * np.exp(-(((X - 0.5) / 0.1) ** 2))


def test_barrier_steps_need_a_rise_above_threshold_with_the_peak_inside():
    curves = _curves(
        {
            0: [bump(0.0)] * 2,
            16: [bump(0.05)] * 2,
            2000: [bump(0.002)] * 2,
            4000: [np.linspace(0.1, 0.3, 11)] * 2,
        }
    )  # 4000: rises to the end, no inner peak
    assert barrier_steps(curves) == [16]


def test_the_barrier_window_is_judged_within_a_factor_of_four():
    assert barrier_window_matches([16, 64, 1024, 2000], (16, 2000))
    assert barrier_window_matches([8, 4000], (16, 2000))
    assert not barrier_window_matches([2, 2000], (16, 2000))  # appears 8x too early
    assert not barrier_window_matches([16, 16000], (16, 2000))  # vanishes 8x too late
    assert not barrier_window_matches([], (16, 2000))


def test_mean_std_median_over_replicates_are_those_of_the_replicates():
    curves = _curves({16: [bump(0.01), bump(0.03), bump(0.08)]})
    summary = summary_rows(curves, metric_rows(curves))
    heights = [
        max(bump(h)) - bump(h)[0] for h in (0.01, 0.03, 0.08)
    ]  # start 0.5: max is the start or the bump
    assert aggregate(summary, 16, "error", "rise_over_start") == pytest.approx(np.mean(heights))
    assert aggregate(summary, 16, "error", "rise_over_start", "std") == pytest.approx(np.std(heights, ddof=1))
    assert aggregate(summary, 16, "error", "rise_over_start", "median") == pytest.approx(np.median(heights))


def test_one_replicate_has_no_std_and_prints_n_a():
    curves = _curves({16: [bump(0.05)]})
    summary = summary_rows(curves, metric_rows(curves))
    assert math.isnan(aggregate(summary, 16, "error", "rise_over_start", "std"))
    assert "n/a" in pm(0.05, math.nan) and "± 0.00" not in pm(0.05, math.nan)
    assert "n/a" in accuracy_verdict([0.98], None, "40ep")


def test_bootstrap_interval_covers_the_replicates_and_widens_with_standard_errors():
    exact = _curves({16: [bump(0.02), bump(0.04), bump(0.06)]})
    lo, hi = bootstrap_interval(exact, 16, "error", "rise_over_start")
    assert 0.02 - 1e-9 <= lo <= 0.04 <= hi <= 0.06 + 1e-9
    noisy = _curves({16: [bump(0.02), bump(0.04), bump(0.06)]}, se=0.01)
    nlo, nhi = bootstrap_interval(noisy, 16, "error", "rise_over_start")
    assert nhi - nlo > hi - lo
    single = _curves({16: [bump(0.04)]})
    assert bootstrap_interval(single, 16, "error", "rise_over_start") == pytest.approx((0.04, 0.04), abs=1e-3)


def test_bootstrap_on_the_whole_split_is_the_replicate_bootstrap_written_out():
    """No standard errors: the interval is the percentile bootstrap of the replicate mean,
    written out here with the same generator (seed 0, replicates drawn first)."""
    curves = _curves({16: [bump(0.02), bump(0.05), bump(0.09)]})
    f = np.stack([bump(0.02), bump(0.05), bump(0.09)])
    pick = np.random.default_rng(0).integers(0, 3, size=(2000, 3))
    heights = f[pick].max(axis=-1) - f[pick][..., 0]
    expected = np.quantile(heights.mean(axis=1), [0.025, 0.975])
    assert bootstrap_interval(curves, 16, "error", "rise_over_start") == (expected[0], expected[1])


def test_accuracy_after_a_shortened_schedule_is_not_applicable():
    claims = claims_of("cifar_resnet_20")
    assert "not applicable" in accuracy_verdict([0.56], claims, "2ep")
    assert "NOT CONFIRMED" in accuracy_verdict([0.56], claims, "160ep")
    assert "**CONFIRMED**" in accuracy_verdict([0.915, 0.918], claims, "160ep")


def test_barrier_verdicts_against_the_papers_claims():
    steps = {
        0: [bump(0.0)] * 2,
        16: [bump(0.05)] * 2,
        256: [bump(0.05)] * 2,
        2000: [bump(0.02)] * 2,
        8000: [bump(0.0)] * 2,
    }
    curves = _curves(steps)
    summary = summary_rows(curves, metric_rows(curves))
    line = barrier_verdict(curves, summary, claims_of("cifar_resnet_20"))
    assert "**CONFIRMED**" in line and "from t = 16" in line and "none from t = 8000 on" in line
    assert "between t = 0" in line  # the onset as an interval
    assert "NOT CONFIRMED" in barrier_verdict(curves, summary, claims_of("mnist_lenet_300_100"))


def test_the_overfitting_note_appears_only_when_the_loss_ends_above_its_start():
    rising = _curves({100: [np.linspace(0.1, 0.2, 11)]})
    assert "overfitting" in overfitting_note(rising, summary_rows(rising, metric_rows(rising)))
    falling = _curves({100: [np.linspace(0.3, 0.2, 11)]})
    assert overfitting_note(falling, summary_rows(falling, metric_rows(falling))) is None


def test_from_init_verdicts_follow_each_settings_claim():
    from linpath.analysis.verdicts import from_init_verdicts

    convex = _curves({0: [np.exp(-5 * X) * 2.3]})  # falls at once: MNIST's claim
    plateau = _curves({0: [2.3 - 2.2 * X**8]})  # stays high, drops near the end: the convnets'
    for curves, preset, expected in (
        (convex, "mnist_lenet_300_100", "roughly convex"),
        (plateau, "cifar_resnet_20", "stays high"),
    ):
        summary = summary_rows(curves, metric_rows(curves))
        lines = from_init_verdicts(curves, summary, claims_of(preset))
        line = next(line for line in lines if expected in line)
        assert "**CONFIRMED**" in line, line
    summary = summary_rows(plateau, metric_rows(plateau))
    assert "NOT CONFIRMED" in next(
        line
        for line in from_init_verdicts(plateau, summary, claims_of("mnist_lenet_300_100"))
        if "convex" in line
    )


def test_the_barrier_window_is_not_judged_on_a_shortened_schedule():
    curves = _curves(
        {0: [bump(0.0)] * 2, 16: [bump(0.05)] * 2, 2000: [bump(0.02)] * 2, 8000: [bump(0.0)] * 2}
    )
    summary = summary_rows(curves, metric_rows(curves))
    assert "**not applicable**" in barrier_verdict(curves, summary, claims_of("cifar_resnet_20"), "8ep")
    assert "**CONFIRMED**" in barrier_verdict(curves, summary, claims_of("cifar_resnet_20"), "160ep")
