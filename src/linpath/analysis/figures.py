"""The paper's three figures (matplotlib, PNG and PDF).

Figure 1: loss and error along the path from t = 0, mean ± std over replicates.
Figure 2: the same for several starting t, coloured by t.
Figure 3: a path metric (default rise_over_start, the paper's "maximum increase") vs t on a
log axis, t = 0 drawn at the left edge. Its markers say where the mean curve's maximum lies:
filled inside the path, hollow at x = 1 (the end above the start, e.g. test-loss overfitting,
which rise_over_start counts but which is no barrier); with rise_over_start, a second series
gives the interior peak's height above both ends (rise_over_endpoints), so a rise at the end
reads as zero there.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from linpath.analysis.coverage import count_text, expected_replicates, replicates_at  # noqa: E402
from linpath.analysis.curves import Curves  # noqa: E402
from linpath.analysis.intervals import CONFIDENCE, aggregate  # noqa: E402
from linpath.analysis.metrics import BY_NAME, peak_place  # noqa: E402
from linpath.errors import LinpathError  # noqa: E402

LABELS = {"loss": "test loss (cross-entropy)", "error": "test error"}
# Figure 3's markers by where the mean curve's maximum lies (metrics.peak_place; the plotted value
# is the replicates' mean metric, which can be above 0 where the mean curve peaks at its start)
PEAK_MARKERS = {
    "inside": {"marker": "o", "color": "C3", "label": "maximum inside the path (mean curve)"},
    "end": {
        "marker": "o",
        "color": "C3",
        "markerfacecolor": "white",
        "label": "maximum at x = 1, the end above the start: no barrier (mean curve)",
    },
    "start": {"marker": ".", "color": "gray", "label": "maximum at the start (mean curve)"},
}
INTERIOR_LABEL = "interior peak above both ends (rise_over_endpoints)"
LM_LABELS = {
    "loss": "test token loss (nats)",
    "error": "test next-token error",
    "bits_per_byte": "test bits per byte",
}


def _words(metric: str) -> str:
    return BY_NAME[metric].words if metric in BY_NAME else metric


def quantity_label(quantity: str, split: str) -> str:
    return LABELS[quantity].replace("test", split)


def curve_label(curves: Curves, quantity: str) -> str:
    """The axis label of a quantity of these curves (a language model's: per token, next-token)."""
    return (LM_LABELS if curves.is_lm else LABELS)[quantity].replace("test", curves.split)


def save_figure(fig, folder: Path, name: str) -> list[Path]:
    paths = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "pdf"):
            path = folder / f"{name}.{ext}"
            tmp = folder / f".{name}.tmp.{ext}"
            try:
                fig.savefig(tmp, dpi=150, bbox_inches="tight")
                tmp.replace(path)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise LinpathError(f"cannot write figure {path}: {e.strerror or e}") from None
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def band(ax, x, mean, std, **kw):
    line = ax.plot(x, mean, **kw)[0]
    std = np.nan_to_num(std)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def _finite_ylim(ax, arrays):
    values = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.array([])
    if values.size:
        lo, hi = values.min(), values.max()
        pad = 0.05 * (hi - lo or 1.0)
        ax.set_ylim(lo - pad, hi + pad)


def _overlay(ax, other: Curves | None, t: int, q: str, color) -> list[np.ndarray]:
    """The other split's mean curve from t, dashed (Goodfellow et al. plot the training loss)."""
    if other is None or t not in other.steps:
        return []
    x, mean, _ = other.mean_std(t, q)
    ax.plot(x, mean, color=color, linestyle="--", linewidth=1)
    return [mean]


def _split_legend(ax, curves: Curves, other: Curves | None) -> None:
    if other is not None:
        ax.plot([], [], color="gray", label=f"{curves.split} (solid)")
        ax.plot([], [], color="gray", linestyle="--", label=f"{other.split} (dashed)")


def bn_words(curves: Curves, batchnorm: bool | None) -> str:
    """The BatchNorm policy for a title, said only where the model has BatchNorm (None: not
    known, e.g. an external run's model, and said)."""
    return "" if batchnorm is False else f", BatchNorm {curves.bn}"


def draw_figure1(curves: Curves, title: str, other: Curves | None = None, batchnorm: bool | None = None):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, q in zip(axes, ("loss", "error")):
        x, mean, std = curves.mean_std(0, q)
        band(ax, x, mean, std, color="C0")
        _finite_ylim(ax, [mean - std, mean + std, *_overlay(ax, other, 0, q, "C0")])
        ax.set_xlabel("interpolation x  (0 = initialization, 1 = final)")
        ax.set_ylabel(curve_label(curves, q) if other is None else f"{LABELS[q].split(' ', 1)[1]}")
        ax.grid(alpha=0.3)
    _split_legend(axes[1], curves, other)
    if other is not None:
        axes[1].legend(fontsize=8)
    n = len(replicates_at(curves, 0))
    over = count_text(curves, 0) or f"{n} replicate{'s' * (n != 1)}"
    fig.suptitle(
        f"{title}: the path from initialization (mean ± std over {over}{bn_words(curves, batchnorm)})"
    )
    return fig


def figure1(
    curves: Curves, title: str, folder: Path, other: Curves | None = None, batchnorm: bool | None = None
) -> list[Path]:
    return save_figure(draw_figure1(curves, title, other, batchnorm), folder, "figure1")


def figure2_steps(curves: Curves, preferred: tuple[int, ...]) -> list[int]:
    """The preferred starting steps that were swept, and the last kept t before the end."""
    steps = curves.steps
    chosen = [t for t in preferred if t in steps]
    if steps and steps[-1] not in chosen:
        chosen.append(steps[-1])  # the last kept t before the end
    return chosen or steps[:1]


def figure2(
    curves: Curves, title: str, folder: Path, steps: list[int], other: Curves | None = None
) -> list[Path]:
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, q in zip(axes, ("loss", "error")):
        arrays = []
        for i, t in enumerate(steps):
            color = cmap(i / max(1, len(steps) - 1) * 0.9)
            x, mean, std = curves.mean_std(t, q)
            short = count_text(curves, t)
            band(ax, x, mean, std, color=color, label=f"t = {t}" + (f" ({short})" if short else ""))
            arrays += [mean - std, mean + std, *_overlay(ax, other, t, q, color)]
        _finite_ylim(ax, arrays)
        ax.set_xlabel("interpolation x  (0 = state at t, 1 = final)")
        ax.set_ylabel(curve_label(curves, q) if other is None else f"{LABELS[q].split(' ', 1)[1]}")
        ax.grid(alpha=0.3)
    _split_legend(axes[1], curves, other)
    axes[1].legend(title="start", fontsize=8, loc="upper right")
    fig.suptitle(f"{title}: paths from the state at iteration t to the final state")
    return save_figure(fig, folder, "figure2")


def _peak_markers(ax, curves: Curves, q: str, positions, mean) -> None:
    """Figure 3's markers: each t's value marked by where its mean curve's maximum lies."""
    places = np.array([peak_place(curves.mean_std(t, q)[1]) for t in curves.steps])
    for place, style in PEAK_MARKERS.items():
        chosen = places == place
        if np.any(chosen):
            ax.plot(positions[chosen], mean[chosen], linestyle="none", markersize=5, **style)


def _figure3_panel(ax, curves: Curves, summary: list[dict], q: str, metric: str, positions) -> None:
    steps = curves.steps
    mean = np.array([aggregate(summary, t, q, metric) for t in steps], float)
    lo = np.array([aggregate(summary, t, q, metric, "ci_low") for t in steps], float)
    hi = np.array([aggregate(summary, t, q, metric, "ci_high") for t in steps], float)
    line = ax.plot(positions, mean, color="C3", linewidth=1)[0]
    ok = np.isfinite(lo) & np.isfinite(hi)
    if np.any(ok & (hi > lo)):
        ax.fill_between(positions[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.2, linewidth=0)
    _peak_markers(ax, curves, q, positions, mean)
    _mark_short(ax, curves, positions, mean)
    if metric == "rise_over_start":
        interior = [aggregate(summary, t, q, "rise_over_endpoints") for t in steps]
        ax.plot(positions, interior, color="C0", linestyle="--", linewidth=1, label=INTERIOR_LABEL)
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.legend(fontsize=7, loc="best")


def draw_figure3(curves: Curves, summary: list[dict], title: str, metric: str = "rise_over_start"):
    steps = curves.steps
    positions = np.array([t if t > 0 else 0.5 for t in steps], float)  # t = 0 at the left edge
    fig, axes = plt.subplots(2, 1, figsize=(7.5, 6.5), sharex=True)
    for ax, q in zip(axes, ("loss", "error")):
        _figure3_panel(ax, curves, summary, q, metric, positions)
        ax.set_xscale("log")
        ax.set_xlim(positions.min() / 1.5, positions.max() * 1.5)  # also when no value is finite
        ax.set_ylabel(f"{_words(metric)}\nof the {curve_label(curves, q)}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    ticks = [p for p in (0.5, 1, 4, 16, 64, 256, 1024, 4096, 16384, 65536) if p <= positions.max()]
    axes[1].set_xticks(ticks)
    axes[1].set_xticklabels(["0" if p == 0.5 else f"{int(p)}" for p in ticks])
    axes[1].set_xlabel("starting iteration t (log scale; t = 0 at the left edge)")
    what = (
        "maximum increase above the start, max f(x) - f(0)" if metric == "rise_over_start" else _words(metric)
    )
    band = f"mean over replicates, {CONFIDENCE:.0%} bootstrap interval"
    if any(count_text(curves, t) for t in steps):
        band += f"; n/{len(expected_replicates(curves))}: a point averaging n replicates only"
    fig.suptitle(f"{title}: {what}\nalong the path from t to the final state ({band})")
    return fig


def figure3(
    curves: Curves, summary: list[dict], title: str, folder: Path, metric: str = "rise_over_start"
) -> list[Path]:
    """The metric against t, mean over replicates, with its bootstrap interval as the band."""
    return save_figure(draw_figure3(curves, summary, title, metric), folder, "figure3")


def _mark_short(ax, curves: Curves, positions: np.ndarray, mean: np.ndarray) -> None:
    """Label each point averaging fewer than the setting's replicates with n/N."""
    expected = len(expected_replicates(curves))
    for t, position, value in zip(curves.steps, positions, mean):
        n = len(replicates_at(curves, t))
        if n < expected and np.isfinite(value):
            ax.annotate(
                f"{n}/{expected}", (position, value), textcoords="offset points", xytext=(0, 6), ha="center",
                fontsize=7, color="C3",
            )  # fmt: skip


def all_figures(
    curves: Curves,
    summary: list[dict],
    title: str,
    folder: Path,
    figure2_preferred: tuple[int, ...],
    metric: str = "rise_over_start",
    other: Curves | None = None,
    batchnorm: bool | None = None,
) -> list[Path]:
    """Figures 1-3 of one setting; `other` (the same setting on the other split) is overlaid
    dashed on Figures 1 and 2; `batchnorm`: whether the model has BatchNorm (the titles name
    the BatchNorm policy unless it is False; models.has_batchnorm for a preset's model)."""
    paths = []
    if 0 in curves.steps:
        paths += figure1(curves, title, folder, other, batchnorm)
    paths += figure2(curves, title, folder, figure2_steps(curves, figure2_preferred), other)
    paths += figure3(curves, summary, title, folder, metric)
    return paths
