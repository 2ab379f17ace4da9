"""runtime/threads.py: the thread count from what the process may use (affinity, cgroup v1/v2
quotas read from fake cgroup files, torchrun's local ranks), the user's choices first, the
command line's --threads, and one thread for a small model's evaluation. Expected values are
computed by hand from the fake files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from linpath.errors import LinpathError
from linpath.runtime import threads
from linpath.runtime.threads import Choice, cgroup_cpus, choose, usable_threads

SRC = Path(__file__).resolve().parents[1] / "src"


def fake_cgroup(tmp_path: Path, self_lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup mount under tmp_path/root holding `files` (relative path -> text), and a
    /proc/self/cgroup holding `self_lines`."""
    root = tmp_path / "root"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    (tmp_path / "self").write_text(self_lines + "\n")
    return root, tmp_path / "self"


@pytest.mark.parametrize(
    "self_lines, files, cpus",
    [
        # v2: the job's quota, 150 ms per 100 ms; its parent unlimited
        (
            "0::/user.slice/job",
            {"user.slice/job/cpu.max": "150000 100000", "user.slice/cpu.max": "max 100000"},
            1.5,
        ),
        # v2: a parent's quota binds a child that has none
        ("0::/a/b", {"a/b/cpu.max": "max 100000", "a/cpu.max": "50000 100000"}, 0.5),
        # v2 in a container: the process's path is "/", the mount its own cgroup
        ("0::/", {"cpu.max": "200000 100000"}, 2.0),
        # v2 without a quota anywhere
        ("0::/a", {"a/cpu.max": "max 100000"}, None),
        # v1, cpu and cpuacct mounted together; a container's mount is its own cgroup, not the host path
        (
            "4:memory:/x\n3:cpu,cpuacct:/docker/abc",
            {"cpu,cpuacct/cpu.cfs_quota_us": "300000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            3.0,
        ),
        # v1 at a path, mounted as cpu/: the smallest of the path's quotas
        (
            "1:cpu:/slurm/job7",
            {
                "cpu/slurm/job7/cpu.cfs_quota_us": "400000",
                "cpu/slurm/job7/cpu.cfs_period_us": "100000",
                "cpu/slurm/cpu.cfs_quota_us": "250000",
                "cpu/slurm/cpu.cfs_period_us": "100000",
            },
            2.5,
        ),
        # v1 without a quota (-1), and a damaged file
        ("1:cpu:/", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ("0::/", {"cpu.max": "lots 100000"}, None),
        # no cgroup file at all
        ("0::/gone", {}, None),
    ],
)
def test_cgroup_quota_from_fake_files(tmp_path, self_lines, files, cpus):
    root, self_cgroup = fake_cgroup(tmp_path, self_lines, files)
    assert cgroup_cpus(root, self_cgroup) == cpus


def test_no_proc_self_cgroup(tmp_path):
    assert cgroup_cpus(tmp_path, tmp_path / "missing") is None


@pytest.mark.parametrize(
    "cpus, env, expected",
    [
        (2, {}, 2),
        (1.5, {}, 1),  # a quota of 1.5 CPUs: one thread
        (0.5, {}, 1),  # never fewer than one
        (8, {"LOCAL_WORLD_SIZE": "3"}, 2),  # torchrun: 8 CPUs among 3 local ranks
        (2, {"LOCAL_WORLD_SIZE": "4"}, 1),
        (16, {"LOCAL_WORLD_SIZE": "junk"}, 16),
    ],
)
def test_usable_threads(cpus, env, expected):
    assert usable_threads(env, cpus) == expected


def test_usable_cpus_is_affinity_capped_by_quota(monkeypatch):
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 8)
    monkeypatch.setattr(threads, "cgroup_cpus", lambda: 2.5)
    assert threads.usable_cpus() == 2.5
    monkeypatch.setattr(threads, "cgroup_cpus", lambda: None)
    assert threads.usable_cpus() == 8


def test_the_users_choices_come_first(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 6)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 6)
    monkeypatch.setattr(threads, "busy_cpus", lambda: 0.0)
    assert choose(None, {}) == Choice(6, "usable CPUs")
    assert choose(None, {"LOCAL_WORLD_SIZE": "2"}) == Choice(3, "usable CPUs")
    assert choose(None, {"LINPATH_THREADS": "4"}) == Choice(4, "LINPATH_THREADS")
    assert choose(3, {"LINPATH_THREADS": "4", "OMP_NUM_THREADS": "5"}) == Choice(3, "threads")
    assert choose(None, {"LINPATH_THREADS": "4", "OMP_NUM_THREADS": "5"}) == Choice(4, "LINPATH_THREADS")
    assert choose(None, {"OMP_NUM_THREADS": "5"}) == Choice(None, "OMP_NUM_THREADS")
    # torchrun sets OMP_NUM_THREADS=1 when it is unset: the cores are shared among the ranks instead
    assert choose(None, {"OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": "2"}) == Choice(3, "usable CPUs")
    assert choose(None, {"OMP_NUM_THREADS": "2", "LOCAL_WORLD_SIZE": "2"}) == Choice(None, "OMP_NUM_THREADS")


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_a_bad_count_is_one_line(bad):
    with pytest.raises(LinpathError, match="LINPATH_THREADS must be a positive integer"):
        choose(None, {"LINPATH_THREADS": bad})


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_bad_threads_argument_is_one_line(bad):
    with pytest.raises(LinpathError, match="threads must be a positive integer"):
        choose(bad, {})


@pytest.fixture
def torch_threads(monkeypatch):
    """torch's thread count and this module's record of the last choice, restored after."""
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_applied", None)
    yield
    torch.set_num_threads(before)


def test_apply_after_torch_is_imported_sets_torchs_count(torch_threads):
    env = {}
    assert threads.apply(1, env) == Choice(1, "threads")
    assert torch.get_num_threads() == 1
    assert env == {}  # too late for the environment: torch has started
    assert threads.chosen_explicitly({})


def test_using_sets_the_count_for_a_block_and_restores_it(torch_threads):
    torch.set_num_threads(2)
    with threads.using(1):
        assert torch.get_num_threads() == 1
        assert threads.chosen_explicitly({})  # the small-model rule stands aside
    assert torch.get_num_threads() == 2 and not threads.chosen_explicitly({})
    with threads.using(None):
        assert torch.get_num_threads() == 2
    with pytest.raises(LinpathError, match="threads must be a positive integer"), threads.using(0):
        pass


@pytest.mark.slow
def test_apply_before_torch_goes_through_the_environment():
    """In a fresh interpreter, as the command line does: the count and the wait policy are in
    the environment when torch starts, and torch uses them; a wait policy given is kept (whether
    linpath asks for PASSIVE depends on this machine's load: test_a_busy_machine_gets_...)."""
    code = (
        "import json, os; from linpath.runtime import threads; threads.apply(); import torch; "
        "print(json.dumps([torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY')]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", *threads.WAIT_VARIABLES)}
    env.update(PYTHONPATH=str(SRC), LINPATH_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    count, wait = json.loads(out.stdout)
    assert count == 1 and wait in ("PASSIVE", None)  # PASSIVE where other work keeps this machine busy
    env["GOMP_SPINCOUNT"] = "10000"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [1, None]


def test_threads_flag_on_every_command_and_bad_values_are_one_line(capsys):
    from linpath.cli import build_parser, main
    from linpath.cli.registry import commands

    parser = build_parser()
    for command in commands():
        with pytest.raises(SystemExit):
            parser.parse_args([command.name, "--help"])
        assert "--threads N" in capsys.readouterr().out, command.name
    assert main(["presets", "--threads", "0"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "linpath: error: threads must be a positive integer (threads), got 0"
    )


class Recorder(nn.Module):
    """A small MLP that records torch's thread count at each forward."""

    def __init__(self, conv: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1) if conv else None
        self.fc = nn.Linear(8, 3)
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.fc(x)


@pytest.mark.parametrize(
    "conv, env, inside", [(False, {}, 1), (True, {}, 2), (False, {"LINPATH_THREADS": "2"}, 2)]
)
def test_a_small_model_evaluates_on_one_thread(torch_threads, conv, env, inside):
    """Through the engine: a small model's forwards see one thread (a convnet's, or an explicit
    count's, the count before), and the count is restored after."""
    from linpath.data.source import EvalSet
    from linpath.engine.evaluator import PathEvaluator

    torch.set_num_threads(2)
    model = Recorder(conv)
    g = torch.Generator().manual_seed(0)
    data = EvalSet(torch.randn(50, 8, generator=g), torch.randint(0, 3, (50,), generator=g))
    engine = PathEvaluator(model, data, precision="fp32")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.MonkeyPatch.context() as m:
        for k in ("OMP_NUM_THREADS", "LINPATH_THREADS"):  # the tests run with OMP_NUM_THREADS=1
            m.delenv(k, raising=False)
        for k, v in env.items():
            m.setenv(k, v)
        engine.model.seen.clear()
        engine.evaluate_path(state, state, [0.0, 1.0])
    assert set(engine.model.seen) == {inside}
    assert torch.get_num_threads() == 2


def test_small_model_rule():
    assert threads.is_small_model(nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3)))
    assert not threads.is_small_model(nn.Linear(784, 300))  # 235,500 parameters
    assert not threads.is_small_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()))


def fake_stat(path, idle: int, total: int) -> None:
    """A /proc/stat whose first line adds up to `total` ticks, `idle` of them idle."""
    path.write_text(f"cpu  {total - idle} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n")


def test_busy_cpus_from_two_readings_of_proc_stat(tmp_path, monkeypatch):
    """The machine's busy share between two readings, in CPUs; an unreadable file is 0."""
    stat = tmp_path / "stat"
    readings = iter([(100, 400), (130, 600)])  # 200 ticks, 30 idle: 85 % busy

    def sleep(_):
        fake_stat(stat, *next(readings))

    fake_stat(stat, *next(readings))
    monkeypatch.setattr(threads.time, "sleep", sleep)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.busy_cpus(0.2, stat) == pytest.approx(0.85 * 4)
    assert threads.busy_cpus(0.2, tmp_path / "missing") == 0.0


def test_a_busy_machine_gets_the_idle_cpus_and_sleeping_threads(monkeypatch):
    """Other work keeping 1.8 of 2 CPUs busy: one thread, and PASSIVE waiting; a quiet machine:
    every usable CPU and OpenMP's own wait; the user's count stands either way."""
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "_applied", None)
    monkeypatch.setitem(sys.modules, "torch", None)  # as before torch is imported
    for busy, count, source, wait in ((1.8, 1, "idle CPUs", "PASSIVE"), (0.1, 2, "usable CPUs", None)):
        monkeypatch.setattr(threads, "busy_cpus", lambda b=busy: b)
        env = {}
        assert threads.apply(None, env) == Choice(count, source)
        assert env.get("OMP_WAIT_POLICY") == wait and env["OMP_NUM_THREADS"] == str(count)
    assert threads.apply(2, env := {}) == Choice(2, "threads") and env["OMP_NUM_THREADS"] == "2"


def test_only_commands_that_do_tensor_work_sample_the_machine(monkeypatch, capsys):
    """`linpath presets` does no tensor work: the command line does not spend SAMPLE_S seconds
    reading /proc/stat for it (its --threads is still checked); a command that computes does."""
    from linpath.cli import main

    sampled = []
    monkeypatch.setattr(threads, "busy_cpus", lambda *a: sampled.append(1) or 0.0)
    monkeypatch.setattr(threads, "_applied", None)
    assert main(["presets"]) == 0 and sampled == []
    assert main(["presets", "--threads", "0"]) == 2 and sampled == []
    capsys.readouterr()
    assert main(["sweep", "/nonexistent/run"]) == 2 and sampled == [1]
