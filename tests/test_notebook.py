"""examples/linpath_tour.ipynb: stored without outputs, and (slow) it runs from top to bottom in a
fresh kernel, and what it prints of the published MNIST run is that run's summary.csv."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest

import linpath

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "linpath_tour.ipynb"
PUBLISHED = ROOT / "docs" / "results" / "mnist_lenet_300_100"


def test_the_notebook_is_stored_without_outputs():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def largest_error_rise(summary: Path) -> tuple[float, int]:
    with open(summary, newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r["metric"], r["quantity"]) == ("rise_over_start", "error")]
    best = max(rows, key=lambda r: float(r["mean"]))
    return float(best["mean"]), int(best["t"])


@pytest.mark.slow
def test_the_notebook_runs(monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed")
    pytest.importorskip("pandas", reason="linpath.load needs pandas")
    monkeypatch.delenv("LINPATH_RUN", raising=False)  # the published run, which the repository holds
    # the kernel imports the linpath this test imports (PYTHONPATH may be relative to the repository)
    source = str(Path(linpath.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on any error
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    found = re.search(r"largest error rise above start: ([\d.]+) \[[\d.]+, [\d.]+\] at t = (\d+)", printed)
    assert found, printed
    mean, t = largest_error_rise(PUBLISHED / "results" / "test-interpolate-uniform100-fp32" / "summary.csv")
    assert (float(found.group(1)), int(found.group(2))) == (pytest.approx(mean, abs=0.6e-4), t)
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the path and the plane (the published run folder has no points to plot)
