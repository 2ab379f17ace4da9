"""The audit of kept states (analysis/audit.py, `linpath audit`): a clean run passes, and each
planted defect (a duplicated file, a tensor-equal copy saved differently, a missing step, a
state from another time, another architecture's state, a NaN) is found, alone, in one line
naming its files; the sweep refuses duplicates unless --allow-duplicates and report.md notes them."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from linpath.analysis import audit as audit_module
from linpath.analysis.audit import DISTANCE_TOLERANCE, audit_run
from linpath.cli import main
from linpath.io.rundir import RunDir
from tests.kept_runs import MODEL, train, vectors
from tests.test_api import one_line_error


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> RunDir:
    """Two replicates of 40 SGD steps kept on the paper's grid: 0, 1, 2, 4, 8, 16, 32, 40."""
    root = tmp_path_factory.mktemp("audit") / "clean"
    train(root, 40)
    train(root, 40, seed=1, replicate=1)
    return RunDir(root)


def copy_of(clean: RunDir, tmp_path) -> RunDir:
    shutil.copytree(clean.root, tmp_path / "run", ignore=shutil.ignore_patterns("audit", ".*lock"))
    return RunDir(tmp_path / "run")


def load(run: RunDir, t: int, r: int = 0) -> dict:
    return torch.load(run.checkpoint(r, t), weights_only=True)


def duplicated_file(run):
    run.checkpoint(0, 8).write_bytes(run.checkpoint(0, 4).read_bytes())
    return "duplicate-file", {4, 8}


def tensor_equal_copy(run):
    torch.save({"state_dict": load(run, 16), "epoch": 3}, run.checkpoint(0, 32))  # a wrapper: other bytes
    return "equal-tensors", {16, 32}


def missing_step(run):
    run.checkpoint(0, 2).unlink()
    return "missing", {2}


def state_from_another_time(run):
    """t = 1 serves final-era weights (the final state, moved a little: no duplicate)."""
    torch.save({k: v + 1e-3 for k, v in load(run, 40).items()}, run.checkpoint(0, 1))
    return "distance", {1, 2, 4, 8, 16, 32}


def another_architecture(run):
    wide = nn.Sequential(nn.Linear(10, 24), nn.ReLU(), nn.Linear(24, 3))
    torch.save({f"net.{k}": v for k, v in wide.state_dict().items()}, run.checkpoint(0, 16))
    return "architecture", {16}


def a_nan(run):
    state = load(run, 8)
    state["net.0.weight"][0, 0] = float("nan")
    torch.save(state, run.checkpoint(0, 8))
    return "nonfinite", {8}


def test_a_clean_run_passes(clean, capsys):
    assert audit_run(clean) == []
    assert main(["audit", str(clean.root)]) == 0
    assert "audit: clean (2 finished replicates, 16 kept states" in capsys.readouterr().out


@pytest.mark.parametrize(
    "plant",
    [duplicated_file, tensor_equal_copy, missing_step, state_from_another_time, another_architecture, a_nan],
)
def test_each_planted_defect_is_found_alone(clean, tmp_path, capsys, plant):
    run = copy_of(clean, tmp_path)
    kind, steps = plant(run)
    findings = audit_run(run)
    assert [(f.kind, f.replicate) for f in findings] == [(kind, 0)], [f.message for f in findings]
    (finding,) = findings
    assert set(finding.steps) == steps
    assert "\n" not in finding.message and f"iter-{min(steps):07d}" in finding.message or kind == "missing"
    assert main(["audit", str(run.root)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{kind}: {finding.message}" and lines[-1].startswith("audit: 1 finding")


def distance(a: dict, b: dict) -> float:
    return float(torch.cat([(a[k] - b[k]).double().flatten() for k in a]).norm())


def test_the_distance_tolerance(clean, tmp_path):
    """t = 32 moved away from the final state: by less than the tolerance (a share of the
    largest distance D) above the nearest earlier state it passes; by more, it is found."""
    run = copy_of(clean, tmp_path)
    final, late = load(run, 40), load(run, 32)
    steps = run.saved_steps(0)
    scale = max(distance(final, load(run, t)) for t in steps)
    nearest_before = min(distance(final, load(run, t)) for t in steps if t < 32)
    unit = {k: (late[k] - final[k]) / distance(late, final) for k in final}
    for factor, found in ((0.5, False), (1.5, True)):
        target = nearest_before + factor * DISTANCE_TOLERANCE * scale
        assert target < scale  # D stays the same
        torch.save({k: final[k] + target * unit[k] for k in final}, run.checkpoint(0, 32))
        kinds = [f.kind for f in audit_run(run, save=False)]
        assert kinds == (["distance"] if found else []), (factor, kinds)


def test_the_cache_reads_only_new_files(clean, tmp_path, monkeypatch):
    run = copy_of(clean, tmp_path)
    assert audit_run(run) == []
    assert (run.root / "audit" / "cache.json").is_file()
    loads = []
    real = audit_module.load_state_dict
    monkeypatch.setattr(audit_module, "load_state_dict", lambda p, *a: loads.append(p) or real(p, *a))
    assert audit_run(run) == []
    assert loads == []  # every file's facts came from the cache
    duplicated_file(run)  # a rewritten file has another size, mtime or inode
    assert [f.kind for f in audit_run(run)] == ["duplicate-file"]
    # the new file, the final's weights, and the new file's neighbours (its lineage pairs)
    assert sorted(set(loads)) == [run.checkpoint(0, t) for t in (4, 8, 16, 40)]


def test_the_sweep_refuses_duplicates_in_one_line(clean, tmp_path, capsys):
    run = copy_of(clean, tmp_path)
    duplicated_file(run)
    torch.save(vectors(100, seed=1), tmp_path / "eval.pt")
    before = sorted(p.relative_to(run.root) for p in run.root.rglob("*"))
    argv = ["sweep", str(run.root), "--model", MODEL, "--data", str(tmp_path / "eval.pt"), "--points", "3"]
    line = one_line_error(capsys, [*argv, "--quiet"])
    assert "duplicate states" in line and "iter-0000004.pt" in line and "--allow-duplicates" in line
    assert sorted(p.relative_to(run.root) for p in run.root.rglob("*")) == before  # nothing written


@pytest.mark.slow
def test_allowed_duplicates_are_swept_and_noted_in_the_report(clean, tmp_path, capsys):
    run = copy_of(clean, tmp_path)
    duplicated_file(run)
    torch.save(vectors(100, seed=1), tmp_path / "eval.pt")
    argv = ["sweep", str(run.root), "--model", MODEL, "--data", str(tmp_path / "eval.pt"), "--points", "3"]
    assert main([*argv, "--quiet", "--allow-duplicates"]) == 0
    assert "warning: the audit found duplicate states" in capsys.readouterr().err
    assert main(["report", str(run.root)]) == 0
    report = (run.root / "report.md").read_text()
    assert (
        "- Note: replicate 0: replicate-0/checkpoints/iter-0000004.pt, replicate-0/checkpoints/iter-0000008.pt are byte-identical"
        in report
    )


@pytest.mark.slow
def test_a_trained_preset_run_passes(small_run):
    """LeNet on MNIST trained by linpath (300 iterations, two replicates): nothing to find."""
    assert audit_run(small_run, save=False) == []
