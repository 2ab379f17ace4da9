"""A disk that fills up during torch.save, on a real small file system: a tmpfs of a few MB
mounted for the test (where the machine lets the tests mount one, as root), else the same
RuntimeError torch 2.x raises there ('[enforce fail at inline_container.cc:672] . unexpected
pos ...') injected at torch.save. In the Keeper, `linpath import` and `linpath train`: one line,
no temporary file left, every earlier file intact (compared with copies taken apart)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.train.keeper import Keeper, restore_state

from ._reliability import record
from .test_api import one_line_error

TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


@contextlib.contextmanager
def small_disk(folder: Path, size: str, monkeypatch, budget: int):
    """A file system of `size` at `folder` (tmpfs); where none can be mounted, torch.save
    fails as on a full disk once `budget` bytes have been saved under `folder`."""
    folder.mkdir(parents=True)
    mounted = os.geteuid() == 0 and shutil.which("mount") is not None
    if mounted:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
        )
        mounted = done.returncode == 0
    if not mounted:
        real, used = torch.save, [0]

        def save(obj, f, *args, **kwargs):
            name = os.readlink(f"/proc/self/fd/{f.fileno()}") if hasattr(f, "fileno") else str(f)
            if name.startswith(str(folder)):
                used[0] += sum(t.numel() * t.element_size() for t in _tensors(obj))
                if used[0] > budget:
                    raise RuntimeError(TORCH_FULL)
            return real(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", save)
    try:
        yield "tmpfs" if mounted else "injected"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


class Wide(nn.Module):
    """About 260 KB a state: a 2 MB disk holds seven."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(256, 256)
        self.out = nn.Linear(256, 4)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


def keeper_loop(folder, steps, start=1, model=None, optimizer=None, **options):
    """SGD on fixed batches keyed by step; returns the states the loop saw at each step."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(512, 256, generator=g), torch.randint(0, 4, (512,), generator=g)
    if model is None:
        torch.manual_seed(0)
        model = Wide()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    keeper = Keeper(folder, model, steps, **options)
    seen = {start - 1: {k: v.clone() for k, v in model.state_dict().items()}}
    for step in range(start, steps + 1):
        batch = torch.arange(step * 16, step * 16 + 16) % 512
        optimizer.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
        keeper.step(step)
        seen[step] = {k: v.clone() for k, v in model.state_dict().items()}
    keeper.finish()
    return seen


def test_a_full_disk_under_the_keeper(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    with small_disk(disk, "2m", monkeypatch, budget=7 * 264_000) as how:
        with pytest.raises(LinpathError) as e:
            keeper_loop(disk / "run", 64)
        message = str(e.value)
        run = RunDir(disk / "run")
        kept = run.saved_steps(0)
        assert "\n" not in message and "cannot write" in message and "iter-" in message
        assert how == "injected" or "No space left on device" in message
        assert not temporaries(disk) and 0 in kept and len(kept) < 8
        shutil.copytree(disk / "run", tmp_path / "moved", ignore=shutil.ignore_patterns(".*lock"))
    reference = keeper_loop(tmp_path / "reference", 64)
    for t in kept:  # what was kept before the disk filled is whole and right
        saved = torch.load(RunDir(tmp_path / "moved").checkpoint(0, t), weights_only=True)
        assert all(torch.equal(saved[k], reference[t][k]) for k in saved), t
    # moved to a disk with room, it resumes from its last kept state to the reference's files
    torch.manual_seed(0)
    model = Wide()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    restore_state(tmp_path / "moved", kept[-1], model)
    keeper_loop(tmp_path / "moved", 64, start=kept[-1] + 1, model=model, optimizer=optimizer)
    moved, ref = RunDir(tmp_path / "moved"), RunDir(tmp_path / "reference")
    assert moved.saved_steps(0) == ref.saved_steps(0)
    assert all(
        moved.checkpoint(0, t).read_bytes() == ref.checkpoint(0, t).read_bytes() for t in ref.saved_steps(0)
    )
    record(
        "fault",
        f"disk full during torch.save under the Keeper (2 MB {how}, issue 30 #9)",
        f"LinpathError: {message}; states 0..{kept[-1]} intact, no temporary; "
        "moved and resumed to the uninterrupted run's bytes",
    )


def test_a_full_disk_during_import(tmp_path, monkeypatch, capsys):
    source = tmp_path / "ckpts"
    source.mkdir()
    for t in (0, 10, 100, 1000, 2000, 3000, 4000, 5000):
        torch.manual_seed(t)
        torch.save(Wide().state_dict(), source / f"step-{t}.pt")
    disk = tmp_path / "disk"
    with small_disk(disk, "2m", monkeypatch, budget=6 * 264_000) as how:
        argv = ["import", str(source), "--pattern", "step-{t}.pt", "--out", str(disk / "runs")]
        line = one_line_error(capsys, argv)
        assert "cannot write" in line and (how == "injected" or "No space left on device" in line)
        assert not temporaries(disk) and not any((disk / "runs").iterdir())  # its scratch folder is gone
    assert len(list(source.iterdir())) == 8  # the sources untouched
    record(
        "fault",
        f"disk full during `linpath import` (2 MB {how})",
        f"exit 2: {line}; no scratch folder left",
    )


@pytest.mark.slow
def test_a_full_disk_during_training(tmp_path, monkeypatch, capsys, data_root):
    """LeNet-300-100 (1.07 MB a state) on a 3 MB disk: the second checkpoint or resume file
    does not fit."""
    disk = tmp_path / "disk"
    with small_disk(disk, "3m", monkeypatch, budget=2 * 1_070_000) as how:
        argv = ["train", "mnist_lenet_300_100", "--training-steps", "20it", "--replicates", "1"]
        argv += ["--out", str(disk / "runs"), "--data-root", str(data_root), "--quiet", "--device", "cpu"]
        line = one_line_error(capsys, argv)
        assert "cannot write" in line and (how == "injected" or "No space left on device" in line)
        assert not temporaries(disk)
        (run,) = (disk / "runs").iterdir()
        for path in RunDir(run).checkpoint_dir(0).glob("iter-*.pt"):
            torch.load(path, weights_only=True)  # every file written is whole
    record(
        "fault",
        f"disk full during `linpath train` (3 MB {how})",
        f"exit 2: {line}; files written whole",
    )


def fill(disk: Path, leave: int = 0) -> None:
    """Fill the file system at `disk` but `leave` bytes (a real tmpfs only)."""
    st = os.statvfs(disk)
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


@pytest.fixture
def full_tmpfs(tmp_path, monkeypatch):
    """A 1 MB tmpfs filled to the brim (skipped where none can be mounted: these cases need
    a real file system's ENOSPC, which the injection above does not give for small writes)."""
    disk = tmp_path / "disk"
    with small_disk(disk, "1m", monkeypatch, budget=0) as how:
        if how != "tmpfs":
            pytest.skip("no tmpfs can be mounted here")
        yield disk


def test_a_keeper_on_a_full_disk_from_the_start(full_tmpfs):
    fill(full_tmpfs)
    torch.manual_seed(0)
    with pytest.raises(LinpathError, match="cannot write .*spec.json: No space left on device") as e:
        Keeper(full_tmpfs / "run", Wide(), 40)
    assert not temporaries(full_tmpfs) and "\n" not in str(e.value)
    record("fault", "a Keeper's first write (spec.json) on a full disk", f"LinpathError: {e.value}")


def test_a_full_disk_at_the_optimizer_state(full_tmpfs):
    """Room for the state at t = 0 but not its optimizer state: one line; restore_state at 0
    then says no optimizer state was kept there, in one line."""
    torch.manual_seed(0)
    model = Wide()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 256)).sum().backward()
    optimizer.step()  # a momentum buffer to keep
    fill(full_tmpfs, leave=300_000)
    with pytest.raises(LinpathError, match="training-state/iter-0000000.pt: No space left") as e:
        Keeper(full_tmpfs / "run", model, 40, optimizer=optimizer)
    assert not temporaries(full_tmpfs)
    run = RunDir(full_tmpfs / "run")
    assert torch.load(run.checkpoint(0, 0), weights_only=True).keys() == model.state_dict().keys()
    with pytest.raises(LinpathError, match="no optimizer state was kept at step 0"):
        restore_state(run.root, 0, Wide(), torch.optim.SGD(Wide().parameters(), lr=0.1))
    record(
        "fault",
        "disk full at the Keeper's optimizer state",
        f"LinpathError: {e.value}; the state itself whole",
    )


def test_the_audit_on_a_full_disk(full_tmpfs):
    """The audit cannot save its cache: it says what it found all the same."""
    from linpath.analysis.audit import audit_run
    from tests.kept_runs import train

    train(full_tmpfs / "run", 8)
    run = RunDir(full_tmpfs / "run")
    run.checkpoint(0, 4).write_bytes(run.checkpoint(0, 2).read_bytes())
    fill(full_tmpfs)
    assert [f.kind for f in audit_run(run)] == ["duplicate-file"]
    assert not run.audit_cache.exists() and not temporaries(full_tmpfs)
    record(
        "fault",
        "`linpath audit` on a full disk (its cache cannot be written)",
        "findings complete, no cache, no temporary",
    )
