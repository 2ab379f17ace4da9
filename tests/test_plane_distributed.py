"""torchrun: `linpath plane` shared by 2 gloo processes on 127.0.0.1 equals the single-process plane."""

import csv
import os

import pytest
import torch

from linpath.models import build
from tests.test_distributed import linpath

pytestmark = pytest.mark.slow  # runs torchrun


def test_two_process_plane_equals_the_single_process_plane(tmp_path, data_root):
    """Each rank evaluates its rows (rank 0 rows 1 and 3 of 4, rank 1 rows 2 and 4), rank 0
    alone prints and draws; plane.csv has the single process's points in its order, the loss
    within 1e-6 and the error identical (the same thread count in both runs)."""
    states = []
    for seed in (0, 1, 2):
        states.append(tmp_path / f"lenet{seed}.pt")
        torch.save(build("mnist_lenet_300_100", 10, seed=seed).state_dict(), states[-1])
    env = {**os.environ, "LINPATH_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    argv = ["plane", *map(str, states), "--model", "mnist_lenet_300_100", "--data", "mnist"]
    argv += ["--grid", "3,4", "--span", "-0.5,1.5", "--device", "cpu"]
    single = linpath([*argv, "--out", str(tmp_path / "single")], env)
    shared = linpath([*argv, "--out", str(tmp_path / "shared")], env, torchrun=True)

    for rank, rows in ((0, (1, 3)), (1, (2, 4))):
        for row in rows:
            assert f"plane shared (rank {rank}): row {row}/4" in shared.stderr
    assert shared.stderr.count("): row ") == 4  # no row evaluated twice
    assert shared.stdout.count("wrote:") == 1 and shared.stdout.count("loss: min") == 1
    assert sorted(p.name for p in (tmp_path / "shared" / "plane.rows").iterdir()) == [
        f"row-{i:04d}.csv" for i in range(4)
    ]
    assert (tmp_path / "shared" / "plane.png").stat().st_size > 0
    a, b = (list(csv.DictReader(open(tmp_path / name / "plane.csv"))) for name in ("single", "shared"))
    assert len(a) == 12 and [(r["alpha"], r["beta"]) for r in a] == [(r["alpha"], r["beta"]) for r in b]
    for x, y in zip(a, b):
        assert abs(float(x["loss"]) - float(y["loss"])) <= 1e-6, (x, y)
        assert x["error"] == y["error"]
    assert len({r["error"] for r in a}) > 1  # the points differ, so a misplaced row would show
    assert (tmp_path / "single" / "plane.json").read_text() == (
        tmp_path / "shared" / "plane.json"
    ).read_text()
    assert single.stdout.splitlines()[:2] == shared.stdout.splitlines()[:2]  # the minima

    # a resumed plane: rows 1 and 3 of 4 left to do are spread over both ranks (rank 0's list of
    # unfinished rows, every size-th), not both given to rank 0 as a split by i % 2 would
    for name in ("row-0000.csv", "row-0002.csv", "../plane.csv"):
        (tmp_path / "shared" / "plane.rows" / name).unlink()
    resumed = linpath([*argv, "--out", str(tmp_path / "shared")], env, torchrun=True)
    assert "plane shared (rank 0): row 1/4" in resumed.stderr
    assert "plane shared (rank 1): row 3/4" in resumed.stderr
    assert resumed.stderr.count("): row ") == 2
    again = list(csv.DictReader(open(tmp_path / "shared" / "plane.csv")))
    assert [(r["alpha"], r["beta"], r["error"]) for r in again] == [
        (r["alpha"], r["beta"], r["error"]) for r in b
    ]
