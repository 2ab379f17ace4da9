import math

import numpy as np
import pytest

from linpath.analysis.metrics import METRICS, metric, path_metrics

X5 = [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_bump_in_the_middle():
    f = [1.0, 1.5, 3.0, 1.2, 0.5]
    assert metric("rise_over_start", X5, f) == pytest.approx(2.0)
    assert metric("rise_over_endpoints", X5, f) == pytest.approx(2.0)
    # chord at x=0.5 is 0.75; 3.0 - 0.75
    assert metric("rise_over_chord", X5, f) == pytest.approx(2.25)
    # running minimum is 1.0 until x=0.75: 3.0 - 1.0
    assert metric("monotonicity_gap", X5, f) == pytest.approx(2.0)
    # lower hull through (0,1), (1,0.5): at 0.5 it is 0.75 -> 3.0 - 0.75
    assert metric("convexity_gap", X5, f) == pytest.approx(2.25)
    assert path_metrics(X5, f)["argmax_x"] == 0.5


def test_a_decreasing_convex_curve_has_no_gaps():
    f = [4.0, 2.0, 1.0, 0.5, 0.25]
    m = path_metrics(X5, f)
    assert m["rise_over_start"] == 0 and m["rise_over_endpoints"] == 0
    assert m["monotonicity_gap"] == 0 and m["convexity_gap"] == 0
    assert m["rise_over_chord"] == 0  # the chord lies above a convex curve: f - chord <= 0, max at the ends


def test_overfitting_end_gives_rise_over_start_without_a_peak():
    f = [0.10, 0.08, 0.07, 0.09, 0.12]  # final loss above the start
    assert metric("rise_over_start", X5, f) == pytest.approx(0.02)
    assert metric("rise_over_endpoints", X5, f) == pytest.approx(0.0)
    assert metric("monotonicity_gap", X5, f) == pytest.approx(0.05)


def test_flat_then_drop_is_large_over_the_chord_but_monotone():
    f = [1.0, 1.0, 1.0, 1.0, 0.0]
    assert metric("rise_over_chord", X5, f) == pytest.approx(0.75)
    assert metric("monotonicity_gap", X5, f) == 0
    assert metric("rise_over_start", X5, f) == 0
    # concave: hull is the chord, the point at 0.75 is 0.75 above it
    assert metric("convexity_gap", X5, f) == pytest.approx(0.75)


def test_convexity_gap_uses_uneven_x():
    x = [0.0, 0.1, 1.0]
    f = [0.0, 0.5, 1.0]  # chord at 0.1 is 0.1
    assert metric("convexity_gap", x, f) == pytest.approx(0.4)


def test_a_small_dip_is_a_monotonicity_gap():
    f = [3.0, 2.0, 2.2, 1.0, 0.5]
    assert metric("monotonicity_gap", X5, f) == pytest.approx(0.2)
    assert metric("rise_over_start", X5, f) == 0


def test_non_finite_curves_give_nan_or_inf_not_errors():
    m = path_metrics(X5, [1.0, float("inf"), 2.0, 1.0, 0.5])
    assert m["rise_over_start"] == math.inf and math.isnan(m["argmax_x"])
    m = path_metrics(X5, [1.0, float("nan"), 2.0, 1.0, 0.5])
    assert all(math.isnan(v) for v in m.values())


def test_convexity_gap_of_random_convex_points_is_zero():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-1, 2, 50))
    assert metric("convexity_gap", x, (x - 0.3) ** 2 + 0.1 * x) == pytest.approx(0, abs=1e-12)


def test_the_stacked_forms_equal_each_curve_alone():
    """Metrics with bootstrap intervals take stacked curves (intervals.py); each row's value is
    the curve's own, bit for bit."""
    rng = np.random.default_rng(1)
    x = np.linspace(-0.5, 1.5, 9)
    f = rng.normal(size=(4, 3, 9))
    for m in METRICS:
        if m.interval:
            stacked = m.of(x, f)
            assert stacked.shape == (4, 3)
            assert all(stacked[i, j] == metric(m.name, x, f[i, j]) for i in range(4) for j in range(3))


def test_barrier_is_the_peak_above_the_ends_mean():
    assert metric("barrier", X5, [0.1, 0.5, 0.3, 0.2, 0.3]) == pytest.approx(0.3)
    assert "barrier" not in path_metrics(X5, [0.1, 0.5, 0.3, 0.2, 0.3])  # spawn's, not a table column
