"""Perturbed children (train/perturb.py, runs/spawn.py's SpawnNoise) and the instability curve
with intervals (analysis/instability.py), against hand computations and, on a trained run, the
parent's own continuation and a plain loop."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from linpath.analysis.instability import instability_curve, stability_rows
from linpath.errors import LinpathError
from linpath.runs.spawn import SpawnNoise
from linpath.train.perturb import parameter_names, perturb_state


def state() -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    nn.init.zeros_(model[2].bias)
    model[1].running_mean.normal_()
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def test_each_parameter_moves_by_eps_of_its_norm_and_nothing_else():
    model, s = state()
    names = parameter_names(model)
    out = perturb_state(s, names, 1e-3, seed=7)
    for k, v in s.items():
        change = float((out[k].double() - v.double()).norm())
        if k in names and float(v.norm()) > 0:
            assert change == pytest.approx(
                1e-3 * float(v.double().norm()), rel=2e-4
            )  # float32 rounding of W + step
        else:  # buffers (running statistics, the batch count) and the zero bias stay
            assert change == 0.0
    again = perturb_state(s, names, 1e-3, seed=7)
    assert all(torch.equal(again[k], out[k]) for k in s)  # seeded
    alone = perturb_state(s, ["0.weight"], 1e-3, seed=7)
    assert torch.equal(alone["0.weight"], out["0.weight"])  # a tensor's noise does not depend on the others
    other = perturb_state(s, names, 1e-3, seed=8)
    assert not torch.equal(other["0.weight"], out["0.weight"])
    same = perturb_state(s, names, 0.0, seed=7)
    assert all(same[k] is s[k] for k in s)  # EPS = 0: the state itself
    for bad in (-1e-3, math.nan, math.inf, True, "0.1"):
        with pytest.raises(LinpathError, match="--perturb"):
            perturb_state(s, names, bad, seed=0)


def test_spawn_noise_names():
    assert (SpawnNoise().kind, SpawnNoise().folder) == ("sgd", "")
    assert (SpawnNoise(1e-3).kind, SpawnNoise(1e-3).folder) == ("perturb:0.001", "perturb0.001")
    with pytest.raises(LinpathError, match="--perturb"):
        SpawnNoise(-1.0)


def rows_of(values: dict, noise="sgd") -> list[dict]:
    """instability.csv rows: values[(replicate, t)] = error barriers of its pairs."""
    out = []
    for (r, t), barriers in values.items():
        for i, b in enumerate(barriers):
            out.append({"setting": "s", "noise": noise, "aligned": "0", "replicate": str(r), "t": str(t),
                        "child_a": "0", "child_b": str(i + 1), "error_barrier": repr(b)})  # fmt: skip
    return out


def test_instability_curve_by_hand():
    """Three parents, two pairs each: the unit is the parent's mean, the interval Student's t."""
    barriers = {(0, 0): [0.10, 0.12], (1, 0): [0.08, 0.10], (2, 0): [0.12, 0.12],
                (0, 100): [0.01, 0.00], (1, 100): [0.02, 0.00], (2, 100): [0.00, 0.00]}  # fmt: skip
    curve = instability_curve(rows_of(barriers))
    assert [(d["t"], d["unit"], d["units"]) for d in curve] == [(0, "replicate", 3), (100, "replicate", 3)]
    means = np.array([0.11, 0.09, 0.12])
    half = stats.t.ppf(0.975, 2) * means.std(ddof=1) / math.sqrt(3)
    assert curve[0]["mean"] == pytest.approx(means.mean())
    assert curve[0]["ci_low"] == pytest.approx(means.mean() - half)
    assert curve[0]["ci_high"] == pytest.approx(means.mean() + half)
    (stable,) = stability_rows(rows_of(barriers))
    # the mean falls from 0.10667 at T = 0 to 0.005 at T = 100, linearly in log2(1 + T): 2 % at
    s = (0.10667 - 0.02) / (0.10667 - 0.005) * math.log2(101)
    assert stable["stable_from"] == pytest.approx(2**s - 1, rel=1e-3)
    assert stable["ci_low"] <= stable["stable_from"] <= stable["ci_high"]
    one = instability_curve(rows_of({(0, 0): [0.1, 0.2, 0.3]}, "perturb:0.001"))
    assert one[0]["unit"] == "pair" and one[0]["units"] == 3 and one[0]["noise"] == "perturb:0.001"
    never = stability_rows(rows_of({(0, 0): [0.001, 0.002], (0, 10): [0.0, 0.001]}))
    assert never[0]["verdict"].startswith("stable (below 0.02) from the first spawn T = 0")


def read(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
