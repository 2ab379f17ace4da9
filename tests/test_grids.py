"""Grids: their syntax (fuzzed), their positions, and the adaptive grid's barrier heights."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linpath.analysis.metrics import metric
from linpath.errors import LinpathError
from linpath.sweep.grids import Grid, parse_grid


def test_uniform_and_points_agree():
    assert parse_grid("uniform:100") == Grid(points=100)
    assert Grid(points=5).xs() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_grid("uniform:5:-0.5:1.5").xs() == [-0.5, 0.0, 0.5, 1.0, 1.5]
    assert Grid(points=100).key == "uniform100"  # existing sweep folders keep their names


def test_dense_grids_are_dense_at_their_end():
    xs = np.array(parse_grid("dense-end:100").xs())
    gaps = np.diff(xs)
    assert xs[0] == 0.0 and xs[-1] == 1.0 and np.all(gaps > 0)
    assert gaps[-1] == pytest.approx(1 / 99**2) and gaps[0] > 10 * gaps[-1]
    start = np.array(parse_grid("dense-start:50:0:2").xs())
    assert start[0] == 0 and start[-1] == 2 and np.diff(start)[0] < np.diff(start)[-1]


def test_values_grids():
    assert parse_grid("values:0,0.5,1").xs() == [0.0, 0.5, 1.0]
    assert parse_grid("-0.5,0,1.5").xs() == [-0.5, 0.0, 1.5]


def test_keys_identify_grids():
    specs = [
        "uniform:100",
        "uniform:50:-0.5:1.5",
        "dense-end:100",
        "dense-start:100",
        "adaptive",
        "adaptive:11:0.005",
        "adaptive:11:0.01:error",
        "values:0,0.5,1",
        "values:0,0.4,1",
    ]
    keys = [parse_grid(s).key for s in specs]
    assert len(set(keys)) == len(keys)
    assert all("/" not in k for k in keys)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "uniform",
        "uniform:",
        "uniform:1",
        "uniform:0",
        "uniform:x",
        "uniform:10:1:0",
        "uniform:10:0:nan",
        "uniform:10:0",
        "values:",
        "values:1,0",
        "values:0,nan",
        "0,0,1",
        "adaptive:11:-1",
        "adaptive:11:0.01:0",
        "bogus:3",
        "uniform:10:0:inf",
    ],
)
def test_bad_grids_are_one_line_errors(bad):
    with pytest.raises(LinpathError) as e:
        parse_grid(bad)
    assert "\n" not in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="uniformdesatv:0123456789.,-+naie ", max_size=30))
def test_parsing_never_crashes(text):
    try:
        grid = parse_grid(text)
    except LinpathError:
        return
    xs = grid.xs()
    assert xs and all(math.isfinite(x) for x in xs) and all(b > a for a, b in zip(xs, xs[1:]))


def curve(peak_x, width, height, slope):
    """A smooth barrier on a sloped baseline, like a loss path."""
    return lambda x: height * np.exp(-((x - peak_x) ** 2) / (2 * width**2)) + slope * (1 - x) + 0.1


def run_grid(grid, f):
    calls = []

    def evaluate(xs):
        calls.extend(xs)
        return [SimpleNamespace(loss=float(f(x)), error=float(f(x))) for x in xs]

    xs, results = grid.run(evaluate)
    return xs, [r.loss for r in results], len(calls)


@settings(max_examples=200, deadline=None)
@given(
    peak_x=st.floats(0.05, 0.95),
    width=st.floats(0.1, 0.5),
    height=st.floats(0.01, 3.0),
    slope=st.floats(0, 2.0),
)
def test_adaptive_finds_the_barrier_of_the_100_point_grid_with_under_30_percent_of_the_points(
    peak_x, width, height, slope
):
    f = curve(peak_x, width, height, slope)
    xs100, f100, _ = run_grid(Grid(points=100), f)
    xs, fa, evaluations = run_grid(parse_grid("adaptive"), f)
    assert evaluations <= 30 and len(set(xs)) == evaluations
    assert xs == sorted(xs) and xs[0] == 0.0 and xs[-1] == 1.0
    reference = metric("rise_over_start", xs100, f100)
    ours = metric("rise_over_start", xs, fa)
    dense = np.linspace(0, 1, 100_001)
    true = metric("rise_over_start", dense, f(dense))
    # within 1 % (or 0.002) of the 100-point grid's, or closer than it to the true height
    assert abs(ours - reference) <= max(0.01 * abs(reference), 0.002) or abs(ours - true) <= abs(
        reference - true
    )
