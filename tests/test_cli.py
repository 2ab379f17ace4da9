"""The command line as a user meets it: one-line errors, and a short end-to-end run."""

import csv
import os
import shutil
import subprocess
import sys

import pytest

from linpath.cli import main


def one_line_error(capsys, argv) -> str:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("linpath: error: ")
    return lines[0]


def test_unknown_preset(capsys):
    assert "unknown preset 'mnist_lenet'" in one_line_error(capsys, ["train", "mnist_lenet"])


def test_missing_data_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LINPATH_MNIST_MIRRORS", "http://127.0.0.1:9")  # no network in tests
    line = one_line_error(
        capsys,
        [
            "train",
            "mnist_lenet_300_100",
            "--data-root",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "runs"),
            "--training-steps",
            "5it",
            "--quiet",
        ],
    )
    assert "MNIST files missing" in line and "nowhere" in line and "--data-root" in line


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "mnist_lenet_300_100", "--batch-size", "-3"], "batch-size must be a positive integer"),
        (["train", "mnist_lenet_300_100", "--training-steps", "12xx"], "not a step: '12xx'"),
        (["train", "mnist_lenet_300_100", "--lr", "fast"], "invalid float value"),
    ],
)
def test_malformed_overrides(capsys, argv, message):
    assert message in one_line_error(capsys, argv)


def test_corrupt_checkpoint(capsys, small_run, data_root, tmp_path):
    run = tmp_path / small_run.root.name
    shutil.copytree(small_run.root, run, ignore=shutil.ignore_patterns("sweep", "paths.csv", ".*lock"))
    ckpt = run / "replicate-0" / "checkpoints" / "iter-0000016.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:300])
    line = one_line_error(
        capsys,
        ["sweep", str(run), "--data-root", str(data_root), "--from-steps", "16", "--points", "3", "--quiet"],
    )
    assert "corrupt or truncated checkpoint" in line and "iter-0000016.pt" in line


def test_sweep_of_a_missing_run_folder(capsys, tmp_path):
    assert "no run folder" in one_line_error(capsys, ["sweep", str(tmp_path / "missing")])


def test_presets_lists_the_four_settings(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist_lenet_300_100", "cifar_resnet_20", "cifar_vgg_16", "imagenet_resnet_50"):
        assert name in out


@pytest.mark.slow
def test_end_to_end_through_the_cli(tmp_path, data_root):
    """A short run: a few hundred iterations, a few t, a coarse grid, in a subprocess."""
    env = {**os.environ, "LINPATH_DATA": str(data_root)}
    cmd = [
        sys.executable,
        "-m",
        "linpath",
        "run",
        "mnist_lenet_300_100",
        "--out",
        str(tmp_path / "runs"),
        "--training-steps",
        "200it",
        "--replicates",
        "2",
        "--points",
        "5",
        "--from-steps",
        "0,16,128",
        "--quiet",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("mnist_lenet_300_100-")
    for name in (
        "spec.json",
        "paths.csv",
        "report.md",
        "replicate-1/train_log.csv",
        "results/test-interpolate-uniform5-fp32/paths.csv",
        "results/test-interpolate-uniform5-fp32/metrics.csv",
        "results/test-interpolate-uniform5-fp32/summary.csv",
        "results/test-interpolate-uniform5-fp32/figures/figure1.png",
        "results/test-interpolate-uniform5-fp32/figures/figure2.pdf",
        "results/test-interpolate-uniform5-fp32/figures/figure3.png",
    ):
        assert (run / name).is_file(), name
    with open(run / "paths.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3 * 5
    report = (run / "report.md").read_text()
    assert "Final test accuracy" in report and "monotone" in report
    # the same command again reuses everything: nothing is retrained or re-evaluated
    items = sorted((run / "sweep").glob("*/r*-t*.csv"))
    before = {
        p: p.stat().st_mtime_ns for p in [*items, run / "replicate-0" / "checkpoints" / "iter-0000200.pt"]
    }
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert items and {p: p.stat().st_mtime_ns for p in before} == before  # no checkpoint or path rewritten
