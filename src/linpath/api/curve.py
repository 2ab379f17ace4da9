"""PathCurve: the values along one path, as every path API returns them."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linpath.analysis.metrics import path_metrics
from linpath.io.files import atomic_write_text
from linpath.io.tables import csv_frame, csv_text
from linpath.sweep.items import PATH_COLUMNS


@dataclass(frozen=True)
class PathCurve:
    """Loss (and error) at each x of θ(x) = (1 - x)·θ_start + x·θ_end."""

    x: np.ndarray
    loss: np.ndarray
    error: np.ndarray | None  # None when there is no error function (e.g. regression)
    examples: int
    bn: str = "interpolate"
    precision: str = "fp32"
    split: str = "custom"
    loss_se: np.ndarray | None = None  # standard errors, where the engine estimates them
    error_se: np.ndarray | None = None
    # streamed evaluation (api/streamed.py): examples read at each x (they differ per x
    # under se_target), the task, and further per-x columns (causal-lm: perplexity, bits_per_byte, tokens)
    point_examples: np.ndarray | None = None
    task: str = "classification"
    quantities: dict[str, np.ndarray] | None = None
    population: int | None = None  # examples of the data the evaluated ones were drawn from, when known
    # curvature (api/options.py's CurvatureRequest): per chosen x, the Hessian's top eigenvalues
    # with their residuals, and its trace with its standard error
    spectra: dict[float, dict] | None = None

    def with_curvature(self, points, spectra: dict | None = None) -> PathCurve:
        """The same curve with the slope and the directional curvature at each x as two more
        columns (engine/curvature.py's CurvaturePoint) and, where measured, Hessian spectra."""
        extra = {
            "slope": np.array([p.slope for p in points], dtype=float),
            "curvature": np.array([p.curvature for p in points], dtype=float),
        }
        return dataclasses.replace(self, quantities={**(self.quantities or {}), **extra}, spectra=spectra)

    def with_population(self, population: int | None) -> PathCurve:
        """The same curve, stating the size of the data its examples were drawn from."""
        return dataclasses.replace(self, population=population)

    @classmethod
    def of(
        cls, xs, results, examples: int, bn: str, precision: str, split: str, has_error: bool = True
    ) -> PathCurve:
        """The curve of an engine's results (engine.scoring.Result) at xs."""
        values = {
            q: np.array([getattr(r, q) for r in results], dtype=float)
            for q in ("loss", "error", "loss_se", "error_se")
        }
        return cls(
            x=np.array(xs, dtype=float),
            loss=values["loss"],
            error=values["error"] if has_error else None,
            examples=examples,
            bn=bn,
            precision=precision,
            split=split,
            loss_se=values["loss_se"],
            error_se=values["error_se"] if has_error else None,
        )

    def metrics(self) -> dict[str, dict[str, float]]:
        """linpath.analysis.metrics.path_metrics of the loss and, when present, the error curve."""
        out = {"loss": path_metrics(self.x, self.loss)}
        if self.error is not None:
            out["error"] = path_metrics(self.x, self.error)
        return out

    def rows(self, replicate: int = 0, t: int = 0) -> list[list]:
        """Rows in paths.csv's format (sweep.tables.PATH_COLUMNS); the error is nan when absent."""
        n = len(self.x)
        nan = [math.nan] * n
        columns = {
            "x": self.x,
            "loss": self.loss,
            "error": self.error if self.error is not None else nan,
            "loss_se": self.loss_se if self.loss_se is not None else nan,
            "error_se": self.error_se if self.error_se is not None else nan,
        }
        fixed = {
            "replicate": replicate,
            "t": t,
            "split": self.split,
            "bn": self.bn,
            "examples": self.examples,
            "precision": self.precision,
        }
        examples = self.point_examples if self.point_examples is not None else [self.examples] * n
        extra = self.quantities or {}
        rows = []
        for i in range(n):
            fixed["examples"] = int(examples[i])
            row = [repr(float(columns[c][i])) if c in columns else fixed.get(c, "") for c in PATH_COLUMNS]
            rows.append(row + [_cell(extra[q][i]) for q in extra])
        return rows

    def summary_lines(self, with_se: bool | None = None) -> list[str]:
        """What `linpath path` prints of each quantity: start (± its standard error: always,
        never, or with_se None: where it is above zero), end, the maximum and where, the rises
        over the start and over the chord."""
        lines = []
        for quantity, m in self.metrics().items():
            values, se = getattr(self, quantity), getattr(self, f"{quantity}_se")
            shown = se is not None and (float(se[0]) > 0 if with_se is None else with_se)
            pm = f" ± {float(se[0]):.4f}" if shown else ""
            lines.append(
                f"{quantity}: start {values[0]:.4f}{pm}, end {values[-1]:.4f}, max {values.max():.4f} at x = "
                f"{m['argmax_x']:.3f}; rise_over_start {m['rise_over_start']:.4f}, "
                f"rise_over_chord {m['rise_over_chord']:.4f}"
            )
        return lines

    def columns(self) -> list[str]:
        """The table's columns: paths.csv's, then the task's further quantities."""
        return PATH_COLUMNS + list(self.quantities or {})

    def to_frame(self, replicate: int = 0, t: int = 0):
        """The curve as a pandas DataFrame, one row per x, in paths.csv's columns (so it
        concatenates with linpath.load(run).paths); needs pandas (linpath[pandas])."""
        return csv_frame(csv_text(self.columns(), self.rows(replicate, t)))

    def to_csv(self, path: str | os.PathLike, replicate: int = 0, t: int = 0) -> Path:
        """Write the curve as a paths.csv-style table (atomically)."""
        atomic_write_text(Path(path), csv_text(self.columns(), self.rows(replicate, t)))
        return Path(path)

    def plot(self, path: str | os.PathLike | None = None, title: str | None = None):
        """A matplotlib Figure of loss (and error) against x; saved to `path` when given.

        Built without pyplot, so it changes no global matplotlib state (safe in notebooks,
        where the returned figure displays itself)."""
        from matplotlib.figure import Figure

        quantities = [("loss", self.loss)] + ([("error", self.error)] if self.error is not None else [])
        fig = Figure(figsize=(5 * len(quantities), 3.8))
        for i, (name, values) in enumerate(quantities):
            ax = fig.add_subplot(1, len(quantities), i + 1)
            ax.plot(self.x, values, color="C0", marker="o" if len(self.x) <= 30 else None, markersize=3)
            ax.set_xlabel("interpolation x  (0 = start, 1 = end)")
            ax.set_ylabel(name if self.split == "custom" else f"{self.split} {name}")
            ax.grid(alpha=0.3)
        fig.suptitle(title or f"linear path between two states (BN {self.bn}, {self.examples} examples)")
        fig.tight_layout()
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=150, bbox_inches="tight")
        return fig


def _cell(value) -> str | int:
    """A table cell: integers as they are, floats with repr (read back exactly)."""
    return int(value) if isinstance(value, (int, np.integer)) else repr(float(value))
