"""Faults: kill -9 during training and sweeps, two processes on one run folder, a disk that
fills up, a path that diverges. Nothing computed may be lost or silently changed.

The kills are real (SIGKILL of a `python -m linpath` subprocess). To land a kill *during* a
file write, the child runs linpath under a small bootstrap that, on the n-th fsync of a file
whose name contains a pattern, writes a marker and stops there: the temporary file is on disk
but not yet renamed into place. The other kills land at a point of the work drawn with a fixed
seed (LINPATH_FAULT_SEED to draw others): once a chosen number of checkpoints or item files
exists, and each test asserts that the kill landed strictly between none and all of them.
"""

from __future__ import annotations

import csv
import errno
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from linpath.cli import main
from linpath.config.presets import preset
from linpath.config.spec import read_spec, write_spec
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.runs import stages
from linpath.sweep.grids import Grid
from linpath.sweep.run import SweepOptions
from linpath.sweep.setting import SweepSetting
from linpath.train.log import read_log
from linpath.train.loop import train_replicate

from ._reliability import record
from .conftest import SMALL

SEED = int(os.environ.get("LINPATH_FAULT_SEED", "20261202"))
RNG = random.Random(SEED)
STEPS = "0,16,256"
POINTS = 5
pytestmark = pytest.mark.slow  # trains runs, runs subprocesses or torchrun

# The full set (the default, and CI) also kills inside the resume file, DONE marker and paths.csv
# writes; LINPATH_FAULTS_FULL=0 keeps only two kills per command (the quick set).
FULL = os.environ.get("LINPATH_FAULTS_FULL", "1") == "1"  # every kill point; "0" for the quick set

# Runs linpath's CLI; with STALL="pattern|n|marker" it stops for good inside the n-th fsync of a
# file whose name contains `pattern`, after writing the file's name to `marker`.
BOOT = r"""
import os, runpy, sys, time
stall = os.environ.get("STALL")
if stall:
    pattern, n, marker = stall.split("|")
    real, seen = os.fsync, [0]
    def fsync(fd):
        real(fd)
        name = os.readlink(f"/proc/self/fd/{fd}")
        if pattern in os.path.basename(name):
            seen[0] += 1
            if seen[0] == int(n):
                with open(marker + ".tmp", "w") as f:
                    f.write(name)
                os.replace(marker + ".tmp", marker)
                time.sleep(3600)
    os.fsync = fsync
sys.argv = ["linpath"] + sys.argv[1:]
runpy.run_module("linpath", run_name="__main__")
"""


def start(args: list[str], stall: str | None = None, marker: Path | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "STALL"}
    if stall:
        env["STALL"] = f"{stall}|{marker}"
    return subprocess.Popen(
        [sys.executable, "-c", BOOT, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 180.0) -> bool:
    """Poll until condition() holds (True) or the process exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.005)
    raise AssertionError("timed out waiting for the child")


def kill9(proc: subprocess.Popen) -> bool:
    """SIGKILL; True if the process was still running when killed."""
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    return alive


def finish(args: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", BOOT, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "STALL"},
    )
    assert done.returncode == 0, done.stderr
    return done


def kill_mid_work(args, done, low: int, total: int, what: str, unit: str, survived: str) -> int:
    """Start the child and kill -9 it once done() (finished units: checkpoints, item files)
    reaches a count drawn from low+1 .. total-1 with the fixed seed; asserts that the kill
    landed mid-work (the process alive, strictly between low and total units done). Returns
    the count at the kill."""
    at = RNG.randint(low + 1, total - 1)
    proc = start(args)
    assert wait_for(lambda: done() >= at, proc), (
        f"the child stopped before {at} {unit}: {proc.communicate()[1][-2000:]}"
    )
    assert kill9(proc), f"the child finished before the kill ({what})"
    count = done()
    assert low < count < total, (what, low, count, total)
    record(
        "fault", f"kill -9 mid-{what}, after {count} of {total} {unit} (seed {SEED})", survived, injected=1
    )
    return count


def stall_and_kill(args, stall: str, tmp_path: Path, what: str, check_lock=None) -> str:
    """Start the child, wait until it stops inside the chosen write, (check the lock), kill -9."""
    marker = tmp_path / f"marker-{RNG.randrange(10**9)}"
    proc = start(args, stall, marker)
    assert wait_for(marker.exists, proc), f"the child never wrote {stall}: {proc.communicate()[1][-2000:]}"
    tmp_file = Path(marker.read_text())
    assert tmp_file.exists() and tmp_file.name.endswith(".tmp")  # written, not yet renamed
    if check_lock:
        check_lock()
    assert kill9(proc)
    record("fault", f"kill -9 {what}", "rerun resumed; results bitwise identical to an uninterrupted run")
    return tmp_file.name


def lock_refusal(args: list[str], what: str):
    """A second process on the same run folder while the first holds it: refused, one line."""

    def check():
        t0 = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "linpath", *args], capture_output=True, text=True, timeout=300
        )
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 2, second.stderr
        assert len(lines) == 1 and "in use by another linpath process" in lines[0], second.stderr
        record(
            "fault",
            f"second process on the same run folder during {what}",
            f"refused in {time.monotonic() - t0:.1f} s, exit 2: {lines[0]}",
        )

    return check


def copy_run(src: RunDir, dest: Path) -> RunDir:
    run = RunDir(dest / src.root.name)
    shutil.copytree(
        src.root,
        run.root,
        ignore=shutil.ignore_patterns("sweep", "paths.csv", "results", "report.md", ".*lock"),
    )
    return run


def same_state(a: Path, b: Path) -> bool:
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) and x[k].dtype == y[k].dtype for k in x)


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- training -------------------------------------------------------------------------------
def test_training_killed_at_random_moments_resumes_bitwise(small_run, data_root, tmp_path):
    spec = preset("mnist_lenet_300_100").with_overrides({**SMALL, "replicates": 1})
    assert spec.run_name == small_run.root.name  # replicate 0 is the same computation
    out = tmp_path / "runs"
    args = [
        "train",
        "mnist_lenet_300_100",
        "--training-steps",
        "300it",
        "--replicates",
        "1",
        "--quiet",
        "--data-root",
        str(data_root),
        "--out",
        str(out),
    ]
    run = RunDir(out / spec.run_name)

    # 1. during the write of a checkpoint; meanwhile a second process is refused by the lock
    stall_and_kill(
        args,
        "iter-0000004|1",
        tmp_path,
        "during the write of checkpoint iter-4 (training)",
        check_lock=lock_refusal(args, "training"),
    )
    assert not run.checkpoint(0, 4).exists() and run.checkpoint(0, 2).exists()
    # 2. during the write of the resume file (its 2nd write in this process), after the lock
    #    holder above was killed: no stale lock, this process proceeds
    if FULL:
        stall_and_kill(args, "resume.pt|1", tmp_path, "during the write of resume.pt (training)")
    record(
        "fault",
        "new process after kill -9 of the lock holder (training)",
        "proceeded: the kernel released the flock",
    )
    # 3. at a seeded point of the rest of training
    kill_mid_work(
        args,
        lambda: len(run.saved_steps(0)),
        len(run.saved_steps(0)),
        len(small_run.saved_steps(0)),
        "training",
        "kept checkpoints",
        "rerun resumed; results bitwise identical",
    )
    assert not run.done_marker(0).exists()
    if FULL:
        # 4. during the write of the DONE marker, with every checkpoint already saved
        stall_and_kill(args, "DONE|1", tmp_path, "during the write of the DONE marker (training)")
        assert not run.done_marker(0).exists()
    finish(args)

    assert run.done_marker(0).exists() and not run.resume_file(0).exists()
    assert run.saved_steps(0) == small_run.saved_steps(0)
    for t in run.saved_steps(0):
        assert same_state(run.checkpoint(0, t), small_run.checkpoint(0, t)), t
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_log(run, 0)) == strip(read_log(small_run, 0))
    leftovers = [p.name for p in run.root.rglob("*.tmp")]
    assert leftovers == []  # the rerun removed what the killed writes left
    record(
        "check",
        "training after kills",
        f"{len(run.saved_steps(0))} checkpoints bitwise equal to the uninterrupted "
        "run; train_log equal; the temporary files of killed writes removed by the rerun",
        checkpoints=len(run.saved_steps(0)),
    )


# --- the sweep ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_sweep(small_run, data_root, tmp_path_factory):
    run = copy_run(small_run, tmp_path_factory.mktemp("ref"))
    stages.sweep(
        run.root,
        SweepSetting(grid=Grid(points=POINTS)),
        SweepOptions(
            data_root=data_root, device="cpu", from_steps=[int(t) for t in STEPS.split(",")], progress=False
        ),
    )
    return run


def compare_tables(run: RunDir, reference: RunDir, what: str) -> None:
    ours, ref = rows_of(run.paths_csv), rows_of(reference.paths_csv)
    keys = [(d["replicate"], d["t"], d["x"], d["split"], d["bn"], d["precision"]) for d in ours]
    assert len(keys) == len(set(keys)), "a row appears twice"
    ref_rows = {tuple(d.items()) for d in ref}
    lost = len(ref_rows - {tuple(d.items()) for d in ours})
    assert lost == 0 and len(ours) == len(ref) == 2 * 3 * POINTS
    assert run.paths_csv.read_text() == reference.paths_csv.read_text()
    record(
        "check",
        what,
        f"paths.csv: {len(ours)} rows, each exactly once, byte-identical to the uninterrupted sweep",
        rows=len(ours),
        rows_lost=lost,
    )


def test_sweep_killed_resumes_to_the_same_table(small_run, reference_sweep, data_root, tmp_path):
    run = copy_run(small_run, tmp_path)
    args = [
        "sweep",
        str(run.root),
        "--points",
        str(POINTS),
        "--from-steps",
        STEPS,
        "--quiet",
        "--data-root",
        str(data_root),
    ]
    items = run.sweep_dir / SweepSetting(grid=Grid(points=POINTS)).key

    stall_and_kill(
        args,
        "r0-t0000016|1",
        tmp_path,
        "during the write of a sweep item file",
        check_lock=lock_refusal(args, "a sweep"),
    )
    assert len(list(items.glob("*.csv"))) == 1  # r0-t0 only
    record(
        "fault",
        "new process after kill -9 of the lock holder (sweep)",
        "proceeded: the kernel released the flock",
    )
    if FULL:
        kill_mid_work(
            args,
            lambda: len(list(items.glob("r*-t*.csv"))),
            1,
            2 * len(STEPS.split(",")),
            "a sweep",
            "item files",
            "rerun resumed; paths.csv identical",
        )
    if FULL:
        stall_and_kill(args, "paths.csv|1", tmp_path, "during the write of paths.csv (the merge)")
    finish(args)
    compare_tables(run, reference_sweep, "sweep after kills")


# --- a disk that fills up -------------------------------------------------------------------
def no_space(real, when):
    def fails(*args, **kwargs):
        if when(*args):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    return fails


def test_a_full_disk_during_a_sweep_loses_nothing(
    small_run, reference_sweep, data_root, tmp_path, monkeypatch, capsys
):
    run = copy_run(small_run, tmp_path)
    argv = [
        "sweep",
        str(run.root),
        "--points",
        str(POINTS),
        "--from-steps",
        STEPS,
        "--quiet",
        "--data-root",
        str(data_root),
    ]
    calls = []
    monkeypatch.setattr(
        os,
        "replace",
        no_space(
            os.replace, lambda src, dst: str(dst).endswith(".csv") and (calls.append(dst) or len(calls) == 3)
        ),
    )  # the 3rd item file (each item's digest is written before it)
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot write" in lines[0] and "No space left on device" in lines[0], lines
    monkeypatch.undo()
    items = sorted((run.sweep_dir / SweepSetting(grid=Grid(points=POINTS)).key).glob("*.csv"))
    assert [p.name for p in items] == ["r0-t0000000.csv", "r0-t0000016.csv"]  # the two finished items, whole
    assert all(len(rows_of(p)) == POINTS for p in items) and not list(run.root.rglob("*.tmp"))
    record(
        "fault",
        "disk full (ENOSPC on rename) during the 3rd item of a sweep",
        f"exit 2: {lines[0]}; the 2 finished items intact, no temporary file left",
    )
    assert main(argv) == 0
    compare_tables(run, reference_sweep, "sweep after a full disk")


def test_a_full_disk_during_training_resumes_bitwise(small_run, mnist, tmp_path, monkeypatch):
    spec = read_spec(small_run)
    run = RunDir(tmp_path / spec.run_name)
    write_spec(run, spec)
    seen = []

    def full_at_resume_file(fd):
        if os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1].startswith(".resume.pt"):
            seen.append(fd)
            return len(seen) == 5  # the resume file at t = 16
        return False

    monkeypatch.setattr(os, "fsync", no_space(os.fsync, full_at_resume_file))
    with pytest.raises(LinpathError) as e:
        train_replicate(spec, run, 0, mnist, progress=False)
    monkeypatch.undo()
    message = str(e.value)
    assert (
        "cannot write" in message
        and "resume.pt" in message
        and "No space left" in message
        and "\n" not in message
    )
    assert run.saved_steps(0) == [0, 1, 2, 4, 8, 16] and not list(run.root.rglob("*.tmp"))
    assert torch.load(run.resume_file(0), weights_only=True)["step"] == 8  # the previous resume file, intact
    record(
        "fault",
        "disk full (ENOSPC on fsync) while writing resume.pt during training",
        f"LinpathError: {message}; earlier checkpoints and resume file intact",
    )
    train_replicate(spec, run, 0, mnist, progress=False)
    assert all(same_state(run.checkpoint(0, t), small_run.checkpoint(0, t)) for t in small_run.saved_steps(0))
    record(
        "check",
        "training after a full disk",
        "resumed; every checkpoint bitwise equal to the uninterrupted run",
    )


def test_a_failing_figure_write_is_one_line(small_run, reference_sweep, tmp_path, monkeypatch, capsys):
    run = copy_run(reference_sweep, tmp_path)
    shutil.copytree(reference_sweep.sweep_dir, run.sweep_dir)
    shutil.copy(reference_sweep.paths_csv, run.paths_csv)
    monkeypatch.setattr(os, "replace", no_space(os.replace, lambda src, dst: "figures" in str(dst)))
    assert main(["report", str(run.root)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "figure" in lines[0] and "No space left" in lines[0], lines
    monkeypatch.undo()
    assert run.paths_csv.read_text() == reference_sweep.paths_csv.read_text()
    record("fault", "disk full while saving a figure (report)", f"exit 2: {lines[0]}; paths.csv intact")
    assert main(["report", str(run.root)]) == 0
    capsys.readouterr()


# --- a path that diverges -------------------------------------------------------------------
def test_a_diverging_path_is_recorded_and_reported(small_run, data_root, tmp_path, capsys):
    run = copy_run(small_run, tmp_path)
    huge = {k: v * 1e30 for k, v in torch.load(run.checkpoint(1, 16), weights_only=True).items()}
    torch.save(huge, run.checkpoint(1, 16))  # a start state whose logits overflow
    assert (
        main(
            [
                "sweep",
                str(run.root),
                "--points",
                str(POINTS),
                "--from-steps",
                "0,16",
                "--quiet",
                "--data-root",
                str(data_root),
            ]
        )
        == 0
    )
    # and an extrapolated grid: x far below 0 blows the weights up for every replicate
    stages.sweep(
        run.root,
        SweepSetting(grid=Grid(kind="values", values=(-1e36, 0.0, 0.5, 1.0))),
        SweepOptions(data_root=data_root, device="cpu", from_steps=[0], progress=False),
    )
    rows = rows_of(run.paths_csv)
    bad = [d for d in rows if not math.isfinite(float(d["loss"]))]
    assert {(d["replicate"], d["t"]) for d in bad} >= {("1", "16"), ("0", "0"), ("1", "0")}
    assert all(d["loss"] in ("inf", "nan") for d in bad)
    assert all(math.isfinite(float(d["loss"])) for d in rows if float(d["x"]) == 1.0)
    assert main(["report", str(run.root)]) == 0
    capsys.readouterr()
    metrics = rows_of(run.results_dir(f"test-interpolate-uniform{POINTS}-fp32") / "metrics.csv")
    row = next(d for d in metrics if d["replicate"] == "1" and d["t"] == "16" and d["quantity"] == "loss")
    assert row["rise_over_start"] in ("inf", "nan")
    figures = run.results_dir(f"test-interpolate-uniform{POINTS}-fp32") / "figures"
    assert all((figures / f"figure{i}.png").stat().st_size > 0 for i in (1, 2, 3))
    record(
        "fault",
        "a diverging path (start state x 1e30, and an extrapolated grid at x = -1e36)",
        f"{len(bad)} points recorded as inf/nan in paths.csv; metrics inf/nan; figures and report written, no crash",
    )
