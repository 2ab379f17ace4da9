"""The sweep setting is written and read in one place (sweep/setting.py): every field survives
the round trip through its command-line flag and through its folder key."""

import argparse
import dataclasses

import pytest

from linpath.sweep.grids import Grid
from linpath.sweep.setting import SweepSetting, parse_key

# one setting per field, that field away from its default (and what it needs to be valid)
CHANGED = {
    "split": SweepSetting(split="train"),
    "bn": SweepSetting(bn="recompute"),
    "grid": SweepSetting(grid=Grid(kind="adaptive", points=7, tol=0.05, quantity="both")),
    "precision": SweepSetting(precision="bf16"),
    "bn_batches": SweepSetting(bn="recompute", bn_batches=3),
    "eval_examples": SweepSetting(eval_examples=500),
    "params": SweepSetting(params="layer:fc1"),
    "hold": SweepSetting(params="weights", hold="start"),
    "task": SweepSetting(task="causal-lm"),
    "se_target": SweepSetting(se_target=0.015),
    "min_examples": SweepSetting(se_target=1e-05, min_examples=40),
}


def test_every_field_has_a_case_here():
    assert set(CHANGED) == {f.name for f in dataclasses.fields(SweepSetting)}
    for name, setting in CHANGED.items():
        assert getattr(setting, name) != getattr(SweepSetting(), name), name


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_each_field_survives_its_key(name):
    setting = CHANGED[name]
    assert setting.key != SweepSetting().key
    assert parse_key(setting.key).setting() == setting


def test_the_paper_setting_key_is_unchanged_and_reads_back():
    assert SweepSetting().key == "test-interpolate-uniform100-fp32"
    assert parse_key("test-interpolate-uniform100-fp32").setting() == SweepSetting()
    assert parse_key("test-recompute16-adaptive11-tol0.01-loss-bf16-n1000").setting() == SweepSetting(
        bn="recompute", grid=Grid(kind="adaptive", points=11), precision="bf16", eval_examples=1000
    )


def test_what_a_key_cannot_hold_is_marked_unknown():
    values = parse_key(SweepSetting(grid=Grid(kind="values", values=(0.0, 0.3, 1.0))).key)
    assert values.grid is None and values.setting() is None
    ranged = parse_key(SweepSetting(grid=Grid(points=5, start=-1 / 3, stop=1.0)).key)
    assert not ranged.grid_exact and ranged.setting() is None  # %g rounds -1/3
    digest = parse_key(SweepSetting(params="fc*.bias").key)
    assert digest.params is None and digest.setting() is None
    for name in ("figures", "test-interpolate16-uniform100-fp32", "test-recompute-uniform100-fp32"):
        assert parse_key(name) is None, name


def _flags(argv, **defaults):
    parser = argparse.ArgumentParser()
    SweepSetting.add_flags(parser, **defaults)
    return SweepSetting.from_args(parser.parse_args(argv))


FLAGS = {
    "split": ["--split", "train"],
    "bn": ["--bn", "recompute"],
    "grid": ["--grid", "adaptive:7:0.05:both"],
    "precision": ["--eval-precision", "bf16"],
    "bn_batches": ["--bn", "recompute", "--bn-batches", "3"],
    "eval_examples": ["--eval-examples", "500"],
    "params": ["--params", "layer:fc1"],
    "hold": ["--params", "weights", "--hold", "start"],
    "task": ["--task", "causal-lm"],
    "se_target": ["--se-target", "0.015"],
    "min_examples": ["--se-target", "1e-05", "--min-examples", "40"],
}


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_each_field_survives_its_flag(name):
    assert set(FLAGS) == set(CHANGED)
    assert _flags(FLAGS[name]) == CHANGED[name]


def test_flag_defaults_and_shorthands():
    assert _flags([]) == SweepSetting()
    assert _flags(["--points", "26"]).grid == Grid(points=26)
    assert _flags([], points=25).grid == Grid(points=25)
    assert _flags(["--points", "26", "--grid", "uniform:5"]).grid == Grid(points=5)  # --grid wins


def test_the_flags_live_beside_the_spec_overrides():
    """`linpath run` takes training's --train-precision (the spec's `precision`) and the
    setting's --eval-precision on one command line: each lands in its own place."""
    from linpath.cli import build_parser, common

    args = build_parser().parse_args(
        ["run", "mnist_lenet_300_100", "--train-precision", "bf16", "--eval-precision", "fp32"]
    )
    assert common.spec_from(args).train.precision == "bf16"
    assert SweepSetting.from_args(args).precision == "fp32"
    args = build_parser().parse_args(["run", "mnist_lenet_300_100", "--eval-precision", "bf16"])
    assert (
        common.spec_from(args).train.precision == "fp32" and SweepSetting.from_args(args).precision == "bf16"
    )
