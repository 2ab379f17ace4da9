"""The README's results come from the committed result files, never from memory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _publish():
    spec = importlib.util.spec_from_file_location("publish", REPO / "docs" / "results" / "publish.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_results_table_is_generated_from_docs_results():
    publish = _publish()
    assert publish.readme_table() in (REPO / "README.md").read_text()


def test_every_figure_the_readme_shows_exists():
    text = (REPO / "README.md").read_text()
    for target in [part.split(")")[0] for part in text.split("](")[1:]]:
        if target.endswith(".png"):
            assert (REPO / target).is_file(), target


def test_the_numbers_quoted_beyond_the_line_are_those_of_the_committed_files():
    import csv
    import json

    folder = REPO / "docs" / "results" / "beyond_the_line_mnist"
    text = (REPO / "docs" / "beyond_the_line.md").read_text()
    before, after = (
        json.loads((folder / f / "metrics.json").read_text()) for f in ("replicates", "replicates-aligned")
    )
    for q, digits in (("error", 4), ("loss", 4)):
        assert (
            f"{before[q]['rise_over_start']:.{digits}f}" in text
            and f"{after[q]['rise_over_start']:.{digits}f}" in text
        )
    rows = list(csv.DictReader(open(folder / "trajectory" / "trajectory.csv")))
    far = max(rows, key=lambda r: float(r["distance_rel"]))
    assert f"{float(far['distance_rel']):.3f}·‖u‖, at t = {far['t']}" in text


def test_the_per_layer_numbers_beyond_the_line_are_those_of_the_committed_table():
    import csv

    rows = list(csv.DictReader(open(REPO / "docs/results/beyond_the_line_mnist/layers/layers.csv")))
    text = (REPO / "docs" / "beyond_the_line.md").read_text()

    def at(layer, x, column):
        return next(float(r[column]) for r in rows if r["layer"] == layer and float(r["x"]) == x)

    assert {r["layer"] for r in rows} == {"fc_layers.0", "fc_layers.1", "fc"}
    assert {r["replicates"] for r in rows} == {"3"} and {r["t"] for r in rows} == {"0"}
    for layer in ("fc_layers.0", "fc_layers.1", "fc"):
        assert f"{at(layer, 0.0, 'error_mean'):.4f} ± {at(layer, 0.0, 'error_std'):.4f}" in text, layer
    assert (
        f"loss {at('fc_layers.0', 0.0, 'loss_mean'):.3f} ± {at('fc_layers.0', 0.0, 'loss_std'):.3f}" in text
    )
    assert f"against {at('fc', 1.0, 'error_mean'):.4f} for the trained" in text
