"""The committed tables of docs/results/decisions/ from make_mnist.sh's work folder:
    python summarize.py WORK SHORT_RUN OUT
curvature.csv (every replicate's slope and d²L/dx² along the path from init), spectra.csv (the
Hessian's top eigenvalues and trace at x = 0, 0.5, 1) and the instability tables of the short
run's spawns (instability.csv, instability_curve.csv, stability.csv, instability.png)."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write(path: Path, columns: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def main(work: Path, short: Path, out: Path) -> None:
    curvature, spectra = [], []
    for folder in sorted((work / "curvature").glob("r*")):
        r = int(folder.name[1:])
        curvature += [[r, d["x"], d["loss"], d["slope"], d["curvature"]] for d in rows_of(folder / "paths.csv")]
        metrics = json.loads((folder / "metrics.json").read_text())
        for x, s in metrics["spectra"].items():
            top = ";".join(f"{v:.6g}" for v in s["eigenvalues"])
            spectra.append([r, x, top, f"{s['trace']:.6g}", f"{s['trace_se']:.3g}", s["trace_method"]])
    write(out / "curvature.csv", ["replicate", "x", "loss", "slope", "curvature"], curvature)
    write(out / "spectra.csv", ["replicate", "x", "top_eigenvalues", "trace", "trace_se", "trace_method"], spectra)
    for name in ("instability.csv", "instability_curve.csv", "stability.csv", "instability.png"):
        shutil.copyfile(short / "spawn" / name, out / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
