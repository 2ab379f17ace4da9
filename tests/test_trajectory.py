"""The trajectory against the init → final line, on hand-made states with answers by hand."""

import csv
import math

import pytest
import torch

from linpath.analysis.trajectory import trajectory, trajectory_figure, trajectory_rows, write_trajectory
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir


def state(w, b):
    """A two-entry 'network': weight (1x2), bias (1), BatchNorm statistics that must not count."""
    return {
        "fc.weight": torch.tensor([w], dtype=torch.float32),
        "fc.bias": torch.tensor([b], dtype=torch.float32),
        "bn.running_mean": torch.tensor([100.0 * w[0]]),
        "bn.running_var": torch.tensor([7.0]),
        "bn.num_batches_tracked": torch.tensor(3),
    }


# weights (w0, w1, b): init (0,0,0), final (4,0,0): the line is the first axis, ‖u‖ = 4, ‖θ_T‖ = 4
STATES = {
    0: state([0.0, 0.0], 0.0),
    1: state([1.0, 3.0], 0.0),  # progress 1/4, distance 3, to final √(9 + 9) = √18
    2: state([2.0, 0.0], -4.0),  # progress 1/2, distance 4, to final √(4 + 16) = √20
    3: state([5.0, 0.0], 0.0),  # overshoot: progress 5/4, distance 0, to final 1
    9: state([4.0, 0.0], 0.0),
}
EXPECTED = {
    0: (0.0, 0.0, 4.0),
    1: (0.25, 3.0, math.sqrt(18)),
    2: (0.5, 4.0, math.sqrt(20)),
    3: (1.25, 0.0, 1.0),
    9: (1.0, 0.0, 0.0),
}


def test_trajectory_by_hand():
    rows = trajectory(STATES, STATES[0], STATES[9])
    assert [r["t"] for r in rows] == [0, 1, 2, 3, 9]
    for row in rows:
        progress, distance, to_final = EXPECTED[row["t"]]
        assert row["progress"] == pytest.approx(progress, abs=1e-12)
        assert row["distance"] == pytest.approx(distance, abs=1e-12)
        assert row["distance_rel"] == pytest.approx(distance / 4, abs=1e-12)
        assert row["to_final"] == pytest.approx(to_final, abs=1e-12)
        assert row["to_final_rel"] == pytest.approx(to_final / 4, abs=1e-12)


def test_equal_ends_have_no_line():
    with pytest.raises(LinpathError, match="equal"):
        trajectory(STATES, STATES[0], STATES[0])


def test_run_folder_and_figure(tmp_path):
    run = RunDir(tmp_path / "run")
    for t, s in STATES.items():
        run.checkpoint(0, t).parent.mkdir(parents=True, exist_ok=True)
        torch.save(s, run.checkpoint(0, t))
    with pytest.raises(LinpathError, match="not finished"):
        trajectory_rows(run, 0)
    run.done_marker(0).touch()
    rows = trajectory_rows(run, 0)
    assert [r["progress"] for r in rows] == pytest.approx([0, 0.25, 0.5, 1.25, 1.0])
    files = write_trajectory(rows, tmp_path / "out", "hand-made")
    table = list(csv.DictReader(open(files[0])))
    assert list(table[0]) == ["t", "progress", "distance", "distance_rel", "to_final", "to_final_rel"]
    assert float(table[2]["distance"]) == pytest.approx(4.0)
    assert files[1].stat().st_size > 0
    texts = [t.get_text() for t in trajectory_figure(rows).axes[0].texts]
    assert "9" in texts and "1" in texts


def test_cli_trajectory(tmp_path, capsys):
    from linpath.cli import main

    run = RunDir(tmp_path / "run")
    for t, s in STATES.items():
        run.checkpoint(0, t).parent.mkdir(parents=True, exist_ok=True)
        torch.save(s, run.checkpoint(0, t))
    run.done_marker(0).touch()
    assert main(["trajectory", str(run.root), "--replicate", "0"]) == 0
    assert "t=2: progress 0.500" in capsys.readouterr().out
    assert (run.root / "trajectory" / "r0" / "trajectory.png").is_file()
    assert main(["trajectory", str(run.root), "--replicate", "1"]) == 2


def test_plane_coordinates_of_hand_made_states():
    """States built as θ_o + α·d_a + β·d_b + (a part off the plane) project to (α, β), at the
    off-plane part's norm (d_a and d_b are not orthogonal, so a mere dot product would be off)."""
    from linpath.analysis.trajectory import plane_coordinates

    origin = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([0.5, -0.5])}
    d_a = {"w": torch.tensor([[1.0, 0.0], [0.0, 0.0]]), "b": torch.tensor([0.0, 0.0])}
    d_b = {"w": torch.tensor([[1.0, 1.0], [0.0, 0.0]]), "b": torch.tensor([0.0, 0.0])}
    off = {"w": torch.tensor([[0.0, 0.0], [0.0, 0.3]]), "b": torch.tensor([0.4, 0.0])}  # norm 0.5
    states = {
        t: {k: origin[k] + alpha * d_a[k] + beta * d_b[k] + s * off[k] for k in origin}
        for t, (alpha, beta, s) in {0: (0, 0, 0), 5: (0.3, -0.2, 1.0), 9: (2.0, 1.5, 0.0)}.items()
    }
    rows = plane_coordinates(states, origin, d_a, d_b)
    assert [r["t"] for r in rows] == [0, 5, 9]
    assert [(r["alpha"], r["beta"], r["off_plane"]) for r in rows] == [
        pytest.approx((0, 0, 0), abs=1e-6),  # float32 states
        pytest.approx((0.3, -0.2, 0.5), abs=1e-6),  # float32 states
        pytest.approx((2.0, 1.5, 0.0), abs=1e-6),  # float32 states
    ]
    assert rows[1]["off_plane_rel"] == pytest.approx(0.5)  # ‖d_a‖ = 1
    with pytest.raises(LinpathError, match="parallel"):
        plane_coordinates(states, origin, d_a, {k: 2 * v for k, v in d_a.items()})
