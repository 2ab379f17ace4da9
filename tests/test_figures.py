"""The figures tell what they show: Figure 3 marks an interior peak apart from a rise at the end
(the test-loss overfitting of the MNIST run), and the titles name the BatchNorm policy only
where the model has BatchNorm. Read from the figures' artists, on hand-made curves whose
answers are known."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from linpath.analysis.curves import Curves, metric_rows
from linpath.analysis.figures import INTERIOR_LABEL, PEAK_MARKERS, draw_figure1, draw_figure3
from linpath.analysis.intervals import summary_rows
from linpath.models import has_batchnorm

X = np.linspace(0, 1, 11)
FLAT = np.linspace(0.3, 0.1, 11)  # falls from start to end: maximum at the start
BUMP = 0.1 + 0.05 * np.exp(-(((X - 0.5) / 0.1) ** 2))  # a peak of 0.05 at x = 0.5 on a flat 0.1
RISE = np.linspace(0.08, 0.092, 11)  # rises to the end: the maximum at x = 1, no interior peak


def curves_of(loss_by_t: dict[int, np.ndarray], error_by_t: dict[int, np.ndarray]) -> Curves:
    c = Curves("test-interpolate-uniform11-fp32", "test", "interpolate", 10000)
    for t in loss_by_t:
        for r in range(2):
            c.by_item[(r, t)] = {
                "x": X,
                "loss": loss_by_t[t] + 0.001 * r,
                "error": error_by_t[t] + 0.001 * r,
                "loss_se": np.zeros(11),
                "error_se": np.zeros(11),
            }
    return c


@pytest.fixture
def figure3():
    """Loss: flat at t = 0, a bump at t = 16, a rise at the end at t = 4000 (overfitting).
    Error: flat, bump, flat."""
    curves = curves_of({0: FLAT, 16: BUMP, 4000: RISE}, {0: FLAT, 16: BUMP, 4000: FLAT})
    fig = draw_figure3(curves, summary_rows(curves, metric_rows(curves)), "Test")
    yield fig
    plt.close(fig)


def marked(ax, place: str) -> list[float]:
    """The x positions (t; t = 0 drawn at 0.5) of the markers of one peak place."""
    lines = [line for line in ax.lines if line.get_label() == PEAK_MARKERS[place]["label"]]
    return [float(v) for line in lines for v in line.get_xdata()]


def test_figure3_marks_a_rise_at_the_end_apart_from_an_interior_peak(figure3):
    loss, error = figure3.axes[:2]
    assert marked(loss, "start") == [0.5]
    assert marked(loss, "inside") == [16]
    assert marked(loss, "end") == [4000]
    assert marked(error, "inside") == [16]
    assert marked(error, "end") == []
    (hollow,) = [line for line in loss.lines if line.get_label() == PEAK_MARKERS["end"]["label"]]
    assert hollow.get_markerfacecolor() == "white"  # hollow, the interior peak's filled
    labels = [t.get_text() for t in loss.get_legend().get_texts()]
    assert PEAK_MARKERS["end"]["label"] in labels and INTERIOR_LABEL in labels


def test_figure3_gives_the_interior_peak_height_as_its_own_series(figure3):
    """At t = 4000 the loss rises 0.012 above its start (rise_over_start), but its interior
    peak above both ends is 0; at t = 16 both are the bump's height."""
    loss = figure3.axes[0]
    (series,) = [line for line in loss.lines if line.get_label() == INTERIOR_LABEL]
    height = dict(zip(series.get_xdata(), series.get_ydata()))
    assert height[4000] == pytest.approx(0.0, abs=1e-12)
    assert height[16] == pytest.approx(0.05, abs=1e-6)
    (rise,) = [line for line in loss.lines if line.get_linestyle() == "-" and line.get_color() == "C3"]
    assert dict(zip(rise.get_xdata(), rise.get_ydata()))[4000] == pytest.approx(0.092 - 0.08)


@pytest.mark.parametrize(
    "batchnorm, says", [(False, False), (True, True), (None, True)]
)  # None: not known (an external model)
def test_figure1_names_batchnorm_only_where_the_model_has_it(batchnorm, says):
    curves = curves_of({0: FLAT}, {0: FLAT})
    fig = draw_figure1(curves, "Test", batchnorm=batchnorm)
    title = fig._suptitle.get_text()
    plt.close(fig)
    assert ("BatchNorm interpolate" in title) == says
    assert "mean ± std over 2 replicates" in title


def test_which_presets_models_have_batchnorm():
    assert not has_batchnorm("mnist_lenet_300_100")
    assert has_batchnorm("cifar_resnet_20") and has_batchnorm("cifar_vgg_16")
