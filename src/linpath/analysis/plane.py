"""Surface: loss and error on a grid over a plane in weight space, its table and its figure.

Arrays are indexed [i_beta, i_alpha] (rows over β, columns over α), as matplotlib's contour
expects. The figure is built without pyplot, so it changes no global matplotlib state.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.jsonfile import read_json
from linpath.io.tables import csv_text, read_csv_rows

PLANE_COLUMNS = ["alpha", "beta", "loss", "error"]


@dataclass(frozen=True)
class Surface:
    """Loss (and error) at θ(α, β) = θ_o + α·d_a + β·d_b for each α in `alpha`, β in `beta`."""

    alpha: np.ndarray
    beta: np.ndarray
    loss: np.ndarray  # [i_beta, i_alpha]
    error: np.ndarray | None  # None when there is no error function (e.g. regression)
    examples: int
    marks: tuple[tuple[float, float, str], ...] = field(default=())  # (α, β, label) of the states
    split: str = "custom"
    precision: str = "fp32"
    trajectory: tuple[tuple[float, float, str], ...] = field(default=())  # (α, β, t) of kept states

    def rows(self) -> list[list[float]]:
        """One [alpha, beta, loss, error] row per point, β outer; the error is nan when absent."""
        out = []
        for i, b in enumerate(self.beta):
            for j, a in enumerate(self.alpha):
                error = float(self.error[i, j]) if self.error is not None else math.nan
                out.append([float(a), float(b), float(self.loss[i, j]), error])
        return out

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the surface as plane.csv-style rows (atomically)."""
        atomic_write_text(Path(path), csv_text(PLANE_COLUMNS, self.rows()))
        return Path(path)

    def plot(self, path: str | os.PathLike | None = None, title: str | None = None):
        """Contours of the loss (log-spaced levels) and of the error, the states marked; a
        matplotlib Figure, saved to `path` when given."""
        from matplotlib.figure import Figure

        panels = [("loss", self.loss)] + ([("error", self.error)] if self.error is not None else [])
        fig = Figure(figsize=(5.2 * len(panels), 4.4))
        for i, (name, values) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            _contour(fig, ax, self.alpha, self.beta, values, log=name == "loss")
            _draw_trajectory(ax, self.trajectory)
            for a, b, label in self.marks:
                ax.plot([a], [b], marker="o", color="white", markeredgecolor="black", markersize=7)
                ax.annotate(label, (a, b), textcoords="offset points", xytext=(6, 6), fontsize=9)
            ax.set_xlabel("α")
            ax.set_ylabel("β")
            ax.set_title(name if self.split == "custom" else f"{self.split} {name}")
            ax.set_aspect("equal", adjustable="box")
        fig.suptitle(title or f"loss surface on a plane ({self.examples} examples)")
        fig.tight_layout()
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=150, bbox_inches="tight")
        return fig


def _draw_trajectory(ax, points) -> None:
    """The training trajectory projected onto the plane: a white line through the kept states,
    labelled with t where the labels do not pile up."""
    if not points:
        return
    ax.plot(
        [p[0] for p in points], [p[1] for p in points], color="white", linewidth=1, marker=".", markersize=3
    )
    span = max(np.ptp([p[0] for p in points]), np.ptp([p[1] for p in points]), 1e-12)
    last = None
    for a, b, label in points:
        if last is None or math.dist((a, b), last) > 0.08 * span:
            ax.annotate(label, (a, b), textcoords="offset points", xytext=(3, -9), fontsize=6, color="white")
            last = (a, b)


def _contour(fig, ax, alpha, beta, values, log: bool) -> None:
    """Filled contours with lines; NaN and inf points left blank."""
    z = np.ma.masked_invalid(np.asarray(values, dtype=float))
    finite = z.compressed()
    if finite.size == 0 or len(alpha) < 2 or len(beta) < 2:
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center")
        return
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1e-12
    if log and lo > 0:
        levels, norm = np.geomspace(lo, hi, 21), LogNorm(vmin=lo, vmax=hi)
    else:
        levels, norm = np.linspace(lo, hi, 21), None
    filled = ax.contourf(alpha, beta, z, levels=levels, norm=norm, cmap="viridis")
    ax.contour(alpha, beta, z, levels=levels[::4], colors="black", linewidths=0.4, alpha=0.5)
    bar = fig.colorbar(filled, ax=ax, shrink=0.85, ticks=levels[::4])
    bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    bar.ax.yaxis.set_minor_formatter(NullFormatter())


class PlaneRows:
    """A plane's finished rows (one β each), kept so that an interrupted plane resumes and so
    that several processes (torchrun ranks) can share one plane without talking to each other:
    each finished row is written atomically to a file of its own, <stem>.rows/row-NNNN.csv
    (one writer per row, so no write is ever lost to another), and the merged table <name>.csv
    (PLANE_COLUMNS, β outer, α inner) is what readers use. The sidecar <stem>.json names the
    plane (fingerprint and grid); every process writes the same bytes, so a race is harmless.
    A folder that holds another plane, or rows without their sidecar, is never overwritten.
    Rows come from the row files and, for rows without one, from <name>.csv (written by older
    versions, which kept rows there only)."""

    def __init__(self, path: str | os.PathLike, alpha: np.ndarray, beta: np.ndarray, fingerprint: str):
        self.path = Path(path)
        self.sidecar = self.path.with_suffix(".json")
        self.folder = self.path.with_name(self.path.stem + ".rows")
        self.alpha = [float(a) for a in alpha]
        self.beta = [float(b) for b in beta]
        self.identity = {"fingerprint": fingerprint, "alpha": self.alpha, "beta": self.beta}
        self.rows: dict[int, tuple[list[float], list[float]]] = {}
        self._claimed = False  # whether this process has written the sidecar
        if self.path.exists() or self.sidecar.exists() or self.folder.exists():
            self._check_identity()
            self.reload()

    def _check_identity(self) -> None:
        try:
            identity = read_json(self.sidecar)
        except LinpathError:
            identity = None
        if identity != self.identity:
            raise LinpathError(
                f"{self.path} holds another plane (or its {self.sidecar.name} is missing or damaged); "
                "choose another output folder or remove it"
            )

    def row_file(self, i: int) -> Path:
        return self.folder / f"row-{i:04d}.csv"

    def reload(self) -> None:
        """Read every finished row again (other processes may have added some): the row files
        first, then the rows of <name>.csv that have no row file. A damaged row file is named
        on stderr and its row left unfinished, so that it is evaluated again."""
        self.rows = {}
        table = self._table_rows() if self.path.exists() else {}
        for i in range(len(self.beta)):
            if self.row_file(i).exists():
                row, problem = self._read_row_file(i)
                if problem is not None:
                    _warn(f"{self.row_file(i)} is damaged ({problem}); its row is evaluated again")
            else:
                row = table.get(i)
            if row is not None:
                self.rows[i] = row

    def _table_rows(self) -> dict[int, tuple[list[float], list[float]]]:
        """The complete β rows of <name>.csv; damaged lines leave their row incomplete."""
        by_beta: dict[float, dict[float, tuple[float, float]]] = {}
        for row in read_csv_rows(self.path):
            try:
                a, b, loss, error = (float(row[c]) for c in PLANE_COLUMNS)
            except (KeyError, TypeError, ValueError):
                continue  # a damaged row: its β row is evaluated again
            by_beta.setdefault(b, {})[a] = (loss, error)
        rows = {}
        for i, b in enumerate(self.beta):
            got = by_beta.get(b, {})
            if all(a in got for a in self.alpha):
                rows[i] = ([got[a][0] for a in self.alpha], [got[a][1] for a in self.alpha])
        return rows

    def _read_row_file(self, i: int) -> tuple[tuple[list[float], list[float]] | None, str | None]:
        """(row i's (losses, errors), None), or (None, why the file is not row i of this grid)."""
        try:
            lines = read_csv_rows(self.row_file(i))
            values = [[float(line[c]) for c in PLANE_COLUMNS] for line in lines]
        except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError):
            return None, f"not a table of numbers ({', '.join(PLANE_COLUMNS)})"
        if [v[0] for v in values] != self.alpha:
            return None, f"its α are not the grid's ({len(values)} points, {len(self.alpha)} expected)"
        if any(v[1] != self.beta[i] for v in values):
            return None, f"not the row of β = {self.beta[i]!r}"
        return ([v[2] for v in values], [v[3] for v in values]), None

    def row(self, i: int) -> tuple[list[float], list[float]] | None:
        """(losses, errors) of β row i when it is finished, else None."""
        return self.rows.get(i)

    def missing(self) -> list[int]:
        """The indices of the β rows not finished."""
        return [i for i in range(len(self.beta)) if i not in self.rows]

    def save(self, i: int, losses: list[float], errors: list[float], table: bool = True) -> None:
        """Record β row i in its own file (after the sidecar, so that rows never exist without
        it), and when `table`, rewrite <name>.csv with every finished row (a single process
        keeps it current; processes sharing a plane merge it once at the end)."""
        self.rows[i] = (list(losses), list(errors))
        if not self._claimed:
            atomic_write_text(self.sidecar, json.dumps(self.identity))
            self._claimed = True
        row = [[a, self.beta[i], loss, error] for a, loss, error in zip(self.alpha, losses, errors)]
        atomic_write_text(self.row_file(i), csv_text(PLANE_COLUMNS, row))
        if table:
            self.write_table()

    def table_text(self) -> str:
        return csv_text(
            PLANE_COLUMNS,
            [
                [a, self.beta[r], loss, error]
                for r in sorted(self.rows)
                for a, loss, error in zip(self.alpha, *self.rows[r])
            ],
        )

    def write_table(self) -> None:
        """Write <name>.csv with every finished row (atomically), unless it holds them already:
        processes that each hold every row write the same bytes, so a race is harmless."""
        text = self.table_text()
        if not (self.path.exists() and self.path.read_text() == text):
            atomic_write_text(self.path, text)


def _warn(message: str) -> None:
    print(f"linpath: warning: {message}", file=sys.stderr, flush=True)


def read_surface(csv_path: str | os.PathLike) -> Surface:
    """A plane.csv read back as a Surface, checked to be a complete grid of numbers (the grid
    of its PlaneRows sidecar when it has one): a plane still being evaluated, or a damaged
    file, is refused naming the file."""
    rows = read_csv_rows(Path(csv_path))
    try:
        values = {(float(r["alpha"]), float(r["beta"])): (float(r["loss"]), float(r["error"])) for r in rows}
    except (KeyError, TypeError, ValueError):
        raise LinpathError(f"{csv_path}: not a plane table ({', '.join(PLANE_COLUMNS)})") from None
    alpha = np.array(sorted({a for a, _ in values}))
    beta = np.array(sorted({b for _, b in values}))
    sidecar = Path(csv_path).with_suffix(".json")  # the grid a plane of PlaneRows is to fill
    if sidecar.is_file():
        try:
            grid = read_json(sidecar)
            alpha, beta = np.array(grid["alpha"], dtype=float), np.array(grid["beta"], dtype=float)
        except (LinpathError, ValueError, KeyError, TypeError):
            raise LinpathError(f"{sidecar}: damaged (not the plane's grid)") from None
    complete = all((a, b) in values for a in alpha for b in beta)
    if not complete or len(values) != len(rows) or len(values) != alpha.size * beta.size or not len(values):
        raise LinpathError(
            f"{csv_path}: not a complete grid ({len(rows)} rows; is it still being evaluated?)"
        )
    loss, error = (np.array([[values[(a, b)][i] for a in alpha] for b in beta]) for i in (0, 1))
    return Surface(alpha, beta, loss, None if np.isnan(error).all() else error, examples=0)
