"""The per-layer picture (Vlaar & Frankle 2022): one path per layer, the other layers held,
drawn together.

Each layer's path is its own sweep setting (a parameter subset); this module reads those
settings' curves, tabulates mean ± std over replicates per (layer, t, x), and draws, for a
starting t, loss and error against x with one line per layer on shared axes.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from linpath.analysis.curves import QUANTITIES, Curves  # noqa: E402
from linpath.analysis.figures import band, quantity_label, save_figure  # noqa: E402

LAYER_COLUMNS = [
    "layer",
    "setting",
    "t",
    "x",
    "replicates",
    "loss_mean",
    "loss_std",
    "error_mean",
    "error_std",
]


def layer_rows(curves_by_layer: dict[str, Curves]) -> list[dict]:
    """One row per (layer, t, x): mean and std over replicates (std NaN for one replicate)."""
    rows = []
    for layer, curves in curves_by_layer.items():
        for t in curves.steps:
            stats = {q: curves.mean_std(t, q) for q in QUANTITIES}
            xs = stats["loss"][0]
            for i, x in enumerate(xs):
                row = {
                    "layer": layer,
                    "setting": curves.setting,
                    "t": t,
                    "x": float(x),
                    "replicates": len(curves.at(t)),
                }
                for q in QUANTITIES:
                    row[f"{q}_mean"] = float(stats[q][1][i])
                    std = float(stats[q][2][i])
                    row[f"{q}_std"] = std if math.isfinite(std) else math.nan
                rows.append(row)
    return rows


def layer_figure(
    curves_by_layer: dict[str, Curves], t: int, title: str, folder: Path, hold: str = "end"
) -> list[Path]:
    """Loss and error along each layer's path from t, one line per layer (mean ± std band);
    `hold` names where the other layers stay, for the title."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    split = next(iter(curves_by_layer.values())).split
    for i, (layer, curves) in enumerate(curves_by_layer.items()):
        if t not in curves.steps:
            continue
        for ax, q in zip(axes, QUANTITIES):
            x, mean, std = curves.mean_std(t, q)
            band(ax, x, mean, std, color=f"C{i}", label=layer)
    for ax, q in zip(axes, QUANTITIES):
        ax.set_xlabel(f"interpolation x  (0 = that layer at t = {t}, 1 = trained)")
        ax.set_ylabel(quantity_label(q, split))
        ax.grid(alpha=0.3)
    axes[0].legend(title="layer moved", fontsize=8)
    replicates = max(len(c.at(t)) for c in curves_by_layer.values())
    others = "trained" if hold == "end" else f"at t = {t}"
    fig.suptitle(f"{title}: one layer moves, the others {others} (mean ± std, {replicates} replicates)")
    fig.tight_layout()
    return save_figure(fig, folder, f"layers-t{t}")
