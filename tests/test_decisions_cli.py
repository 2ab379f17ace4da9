"""Barrier decisions through the front door: the report's decisions.csv and lines, `linpath
compare` against a hand computation of the metric's difference, `linpath plan`, and decisions
withheld over an incomplete setting (tests/synthetic_run.py: made-up curves, no checkpoints)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from linpath.cli import main
from linpath.io.rundir import RunDir
from linpath.sweep.grids import Grid
from tests.synthetic_run import SETTINGS, STEPS, curve, make_run

WHOLE, SUBSET = list(SETTINGS)


def rise_over_endpoints(r: int, t: int, points: int, quantity: int = 1) -> float:
    """max f − max(f(0), f(1)) of the synthetic error curve, by hand."""
    f = [curve(r, t, x)[quantity] for x in Grid("uniform", points).xs()]
    return max(f) - max(f[0], f[-1])


@pytest.fixture
def run(tmp_path) -> RunDir:
    return make_run(tmp_path, replicates=3)


def rows_of(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_the_report_writes_decisions_and_states_them(run, capsys):
    assert main(["report", str(run.root), "--delta", "0.01"]) == 0, capsys.readouterr().err
    rows = rows_of(run.decisions_csv(WHOLE))
    assert [d["decision"] for d in rows[:3]] == ["onset", "vanish", "equivalence_all"]
    per_t = {int(d["t"]): float(d["estimate"]) for d in rows if d["decision"] == "height"}
    hand = {t: np.mean([rise_over_endpoints(r, t, 21) for r in range(3)]) for t in STEPS}
    assert per_t == pytest.approx(hand, abs=1e-12)
    report = run.report.read_text()
    assert "Barrier decisions" in report and "equivalence_all" in report


@pytest.mark.slow
def test_decisions_are_withheld_over_an_incomplete_setting(run, capsys):
    (run.sweep_dir / WHOLE / "r1-t64.csv").unlink()  # the synthetic run names items without zero padding
    assert main(["report", str(run.root)]) == 0, capsys.readouterr().err
    assert not run.decisions_csv(WHOLE).exists()
    assert "Barrier decisions withheld: the setting is incomplete" in run.report.read_text()


def test_compare_two_settings_on_the_same_states(run, capsys):
    assert main(["compare", str(run.root), WHOLE, SUBSET]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out.splitlines()
    rows = rows_of(RunDir(run.root).comparison_csv(WHOLE, SUBSET))
    hand = {
        t: np.mean([rise_over_endpoints(r, t, 21) - rise_over_endpoints(r, t, 11) for r in range(3)])
        for t in STEPS
    }
    assert {int(d["t"]): float(d["estimate"]) for d in rows} == pytest.approx(hand, abs=1e-12)
    assert len(printed) == len(STEPS) + 1 and printed[0].startswith("t=0: ")
    assert main(["compare", str(run.root), WHOLE, "test-nothing-uniform3-fp32"]) == 2
    assert "has no finished sweep setting 'test-nothing-uniform3-fp32'" in capsys.readouterr().err


def test_plan_from_a_pilot(run, capsys):
    assert main(["plan", str(run.root), "--setting", WHOLE, "--claim", "barrier"]) == 0, (
        capsys.readouterr().err
    )
    assert "barrier at δ = 0.005, power 0.8" in capsys.readouterr().out
    assert main(["plan", str(run.root), "--setting", WHOLE, "--examples", "ten"]) == 2
    assert "--examples takes numbers" in capsys.readouterr().err
