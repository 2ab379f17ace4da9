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


def _table_rows(path: Path) -> list[list[str]]:
    """The cells of every markdown table row of a committed benchmark output (headers and
    separator rows left out)."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and not cells[0].startswith(("model", "job", "---")):
            rows.append(cells)
    return rows


def test_the_benchmark_figures_quoted_are_those_of_the_committed_outputs():
    import re

    outputs = REPO / "docs" / "results" / "benchmarks"
    readme = (REPO / "benchmarks" / "README.md").read_text()
    beyond = (REPO / "docs" / "beyond_the_line.md").read_text()
    planes = _table_rows(outputs / "plane_throughput_r3.txt")
    assert len(planes) == 2
    for cells in planes:
        plain, plane, plane_x, line, line_x = (float(c) for c in cells[3:8])
        shown = [f"{v:.1f}" if v >= 10 else f"{v:.2f}" for v in (plane_x, line_x)]
        assert all(f"{v:.1f}" in readme for v in (plain, plane, line)), cells
        assert f"**{shown[0]}**" in readme and shown[1] in readme, cells
        assert f"{shown[0]}×" in beyond and f"(its line {shown[1]}×)" in beyond, cells
    peer = _table_rows(outputs / "vs_loss_landscapes_r3.txt")
    assert len(peer) == 4
    for cells in peer:
        assert all(c in readme for c in cells[1:]), cells
    for name in ("make_mnist_r3.txt", "make_mnist_r4.txt"):
        runs = (outputs / name).read_text()
        totals = re.findall(r"^make mnist ([\d.]+) s$", runs, re.M)
        sweeps = re.findall(r"87/87: .* \((\d+) s\)$", runs, re.M)
        trainings = [max(map(float, m.split())) for m in re.findall(r"seconds at 18760: (.*)$", runs, re.M)]
        assert len(totals) == len(sweeps) == len(trainings) == 4, name
        for total, sweep, training in zip(totals, sweeps, trainings):
            row = f" | {total} | {training:.1f} | {sweep} | {float(total) / 150:.2f} |"
            assert row in readme, (name, row)
    step_ab = (outputs / "step_ab.txt").read_text()
    median = re.search(r"median ([\d.]+), new faster in (\d+)/(\d+)", step_ab)
    assert (
        f"old/new median {median[1]}" in readme and f"faster in {int(median[3]) - int(median[2])}" in readme
    )
    compiled = re.search(r"compilation included\): ([\d.]+) s", (outputs / "compile_step_ab.txt").read_text())
    assert f"Compiling took {compiled[1]} s" in readme
    ab = (outputs / "make_mnist_ab_r4.txt").read_text()
    jobs = re.findall(r"^(\w+): job ([\d.]+) s, training ([\d.]+) s, sweep \((\d+) s\)$", ab, re.M)
    assert len(jobs) == 2 and ab.count("byte-identical") == 7 and "DIFFERENT" not in ab
    quoted = readme.replace("\n", " ")
    for commit, job, training, sweep in jobs:
        assert f"{job} s (training {training} s, sweep {sweep} s)" in quoted, commit
    floor = (outputs / "mnist_floor_r4.txt").read_text()
    peak = re.search(r"peak: (\d+) GFLOP/s", floor)[1]
    steps = dict(re.findall(r"^  (plain|alone|together) +([\d.]+) ms", floor, re.M))
    projected = re.search(r"projected job: .*: (\d+) s, ([\d.]+)x the floor", floor)
    quoted = readme.replace("\n", " ")
    assert f"measured {peak} GFLOP/s" in quoted and f"{projected[1]} s, {projected[2]}×" in quoted
    assert all(f"{steps[k]} ms" in quoted for k in ("plain", "alone", "together")), steps
