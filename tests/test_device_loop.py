"""The device loop (train/device_loop.py) in its CPU stand-in: everything but the CUDA graph
capture (epoch plans drawn ahead, static buffers, the loss summed in place on the device) runs
on the CPU, and must give bitwise the per-replicate loop's checkpoints and logs: augmentation
on, a short last batch in every epoch, momentum, weight decay and a learning-rate milestone.
The graph machinery runs with stand-in graphs: one that replays the static step (as a correct
capture does), one whose capture fails, one whose replay is wrong; the last two must turn
graphs off with one warning and leave the numbers those of the per-replicate loop.

Small ResNet-20 on 8x8 images keeps these fast; the slow test repeats the check on a CIFAR-shaped
source (32x32) with an interruption and resumption in the middle of an epoch."""

from __future__ import annotations

import warnings

import pytest
import torch

from linpath.config.presets import preset
from linpath.config.spec import write_spec
from linpath.data import cifar10
from linpath.data.memory import InMemorySource
from linpath.data.source import Split
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.runtime.distributed import World
from linpath.train import device_loop
from linpath.train.log import read_log
from linpath.train.loop import Branch, train_replicate
from linpath.train.replicate import Replicate


def random_cifar(n_train: int, n_test: int, size: int, augment: bool = True) -> InMemorySource:
    g = torch.Generator().manual_seed(0)

    def split(n):
        images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        return Split(images, torch.randint(0, 10, (n,), generator=g))

    return InMemorySource(
        "random",
        split(n_train),
        split(n_test),
        cifar10.MEAN,
        cifar10.STD,
        10,
        augment_fn=cifar10.crop_flip(4) if augment else None,
    )


def spec_of(steps: str, batch: int, milestones: str = "4it", **overrides):
    return preset("cifar_resnet_20").with_overrides(
        {
            "training_steps": steps,
            "replicates": 1,
            "batch_size": batch,
            "milestone_steps": milestones,
            **overrides,
        }
    )


def trained(tmp_path, name, spec, source, monkeypatch, loop: str, stop_after=None) -> RunDir:
    """Replicate 0 trained by the per-replicate loop (loop "0") or the device loop ("1")."""
    run = RunDir(tmp_path / name / spec.run_name)
    if not run.spec_path.exists():
        write_spec(run, spec)
    monkeypatch.setenv("LINPATH_DEVICE_LOOP", loop)
    train_replicate(spec, run, 0, source, progress=False, branch=Branch(stop_after=stop_after))
    return run


def assert_same_run(a: RunDir, b: RunDir) -> None:
    assert a.saved_steps(0) == b.saved_steps(0) and len(a.saved_steps(0)) > 3
    for t in a.saved_steps(0):
        x = torch.load(a.checkpoint(0, t), weights_only=True)
        y = torch.load(b.checkpoint(0, t), weights_only=True)
        assert list(x) == list(y)
        assert all(torch.equal(x[k], y[k]) for k in x), (t, [k for k in x if not torch.equal(x[k], y[k])][:3])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_log(a, 0)) == strip(read_log(b, 0)) and len(read_log(a, 0)) >= 2
    assert a.done_marker(0).exists() and b.done_marker(0).exists()


@pytest.fixture
def spy(monkeypatch):
    """Records what the device loop did: its LoopStats and the static steps it ran."""
    seen = {"stats": [], "static": 0}
    train, run = device_loop.train, device_loop.StaticStep.run

    def counting_run(self, lr):
        seen["static"] += 1
        run(self, lr)

    monkeypatch.setattr(device_loop, "train", lambda *a, **k: seen["stats"].append(train(*a, **k)))
    monkeypatch.setattr(device_loop.StaticStep, "run", counting_run)
    return seen


# 44 examples at batch 16: epochs of 3 steps (16, 16, 12); 9 steps = 3 epochs, lr x0.1 from step 4
SMALL = dict(n_train=44, n_test=40, size=8)


@pytest.mark.slow  # trains end to end (seconds each)
@pytest.mark.parametrize("augment", [True, False], ids=["augment", "no-augment"])
def test_device_loop_on_the_cpu_is_bitwise_the_per_replicate_loop(tmp_path, monkeypatch, spy, augment):
    source = random_cifar(**SMALL, augment=augment)
    spec = spec_of("9it", 16, augment=augment)
    ref = trained(tmp_path, "loop", spec, source, monkeypatch, "0")
    ours = trained(tmp_path, "device", spec, source, monkeypatch, "1")
    assert_same_run(ours, ref)
    (stats,) = spy["stats"]
    assert stats.graphed == 0 and stats.graphs_off == "not CUDA"
    # steps 0-2 warm up eagerly; of steps 3-8 the full batches (3, 4, 6, 7) run as the static step
    assert spy["static"] == 4 and stats.eager == 9


class StandInGraph:
    """What a correct capture gives: its replay is static.run(lr); with `factor` a wrong one (at
    another learning rate; at 0, a step that leaves the parameters where they were)."""

    def __init__(self, static, lr, factor=1.0):
        self.static, self.lr, self.factor = static, lr, factor

    def replay(self):
        self.static.run(self.lr * self.factor)


def with_stand_in_graphs(monkeypatch, capture):
    monkeypatch.setattr(device_loop, "graphs_wanted", lambda dev: True)
    monkeypatch.setattr(device_loop, "MIN_GRAPH_STEPS", 2)
    monkeypatch.setattr(device_loop, "capture", capture)


@pytest.mark.slow  # trains end to end (seconds each)
def test_stand_in_graphs_are_replayed_per_learning_rate_and_change_nothing(tmp_path, monkeypatch, spy):
    source, spec = random_cifar(**SMALL), spec_of("9it", 16)
    ref = trained(tmp_path, "loop", spec, source, monkeypatch, "0")
    captured = []
    with_stand_in_graphs(monkeypatch, lambda static, lr: captured.append(lr) or StandInGraph(static, lr))
    with warnings.catch_warnings():
        warnings.simplefilter("error", device_loop.DeviceLoopWarning)
        ours = trained(tmp_path, "device", spec, source, monkeypatch, "1")
    assert_same_run(ours, ref)
    (stats,) = spy["stats"]
    assert captured == [0.1 * 0.1]  # step 3 has lr 0.1 but only 1 step left at it: no graph; 4-8 at 0.01
    assert (stats.captures, stats.graphed, stats.graphs_off) == (1, 3, None)  # steps 4 (verified), 6, 7


@pytest.mark.slow  # trains end to end (seconds each)
def test_a_failing_capture_turns_graphs_off_with_one_warning(tmp_path, monkeypatch, spy):
    source, spec = random_cifar(**SMALL), spec_of("9it", 16)
    ref = trained(tmp_path, "loop", spec, source, monkeypatch, "0")

    def failing(static, lr):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    with_stand_in_graphs(monkeypatch, failing)
    with pytest.warns(device_loop.DeviceLoopWarning) as caught:
        ours = trained(tmp_path, "device", spec, source, monkeypatch, "1")
    assert_same_run(ours, ref)
    (warning,) = caught
    text = str(warning.message)
    assert "capture failed: RuntimeError: operation not permitted when stream is capturing" in text
    assert "\n" not in text
    (stats,) = spy["stats"]
    assert stats.graphed == 0 and stats.graphs_off.startswith("capture failed")


@pytest.mark.slow  # trains end to end (seconds each)
@pytest.mark.parametrize("factor", [3.0, 0.0], ids=["another-lr", "no-parameter-update"])
def test_a_wrong_first_replay_is_caught_undone_and_turns_graphs_off(tmp_path, monkeypatch, spy, factor):
    source, spec = random_cifar(**SMALL), spec_of("9it", 16)
    ref = trained(tmp_path, "loop", spec, source, monkeypatch, "0")
    with_stand_in_graphs(monkeypatch, lambda static, lr: StandInGraph(static, lr, factor))
    with pytest.warns(device_loop.DeviceLoopWarning, match="first replay differs from the eager step"):
        ours = trained(tmp_path, "device", spec, source, monkeypatch, "1")
    assert_same_run(ours, ref)  # the eager step's state was kept
    (stats,) = spy["stats"]
    assert stats.graphed == 0 and stats.captures == 1


@pytest.mark.slow  # trains end to end (seconds each)
def test_an_interrupted_device_loop_resumes_to_the_same_run(tmp_path, monkeypatch):
    source, spec = random_cifar(**SMALL), spec_of("9it", 16, keep_steps="5")
    ref = trained(tmp_path, "loop", spec, source, monkeypatch, "0")
    part = trained(tmp_path, "device", spec, source, monkeypatch, "1", stop_after=7)  # "killed" at 7
    assert torch.load(part.resume_file(0), weights_only=True)["step"] == 6  # the last epoch end
    ours = trained(tmp_path, "device", spec, source, monkeypatch, "1")
    assert_same_run(ours, ref)


def test_where_the_device_loop_applies(tmp_path, monkeypatch):
    source, spec = random_cifar(**SMALL), spec_of("9it", 16)
    run = RunDir(tmp_path / spec.run_name)
    rep = Replicate(spec, run, 0, source, torch.device("cpu"))
    monkeypatch.delenv("LINPATH_DEVICE_LOOP", raising=False)
    assert not device_loop.applies(rep, source)  # auto: CUDA only
    monkeypatch.setenv("LINPATH_DEVICE_LOOP", "1")
    assert device_loop.applies(rep, source)
    rep.world = World(rank=0, size=2)
    assert not device_loop.applies(rep, source)  # torchrun: the per-replicate loop with DDP
    monkeypatch.setenv("LINPATH_DEVICE_LOOP", "sometimes")
    with pytest.raises(LinpathError, match="LINPATH_DEVICE_LOOP='sometimes': expected one of auto, 0, 1"):
        device_loop.applies(rep, source)
    monkeypatch.setenv("LINPATH_CUDA_GRAPHS", "no")
    with pytest.raises(LinpathError, match="LINPATH_CUDA_GRAPHS"):
        device_loop.graphs_wanted(torch.device("cuda"))
    assert not device_loop.graphs_wanted(torch.device("cpu"))


def test_an_epoch_plan_holds_the_per_step_draws_of_train_batches():
    """The plan's columns of step k build bitwise train_batches' batch k (the short last batch too)."""
    source = random_cifar(**SMALL)
    steps = source.train_batches(7, 16, start_step=3, augment=True)
    data = source.resident("cpu", augment=True)
    table = source.epoch_plan(7, 1, 16, augment=True)  # epoch 1 = steps 3, 4, 5
    assert table.shape == (4, 44) and sorted(table[0].tolist()) == list(range(44))
    for lo, hi in [(0, 16), (16, 32), (32, 44)]:
        x, y = next(steps)
        ours_x, ours_y = data.batch(table[:, lo:hi])
        assert torch.equal(x, ours_x) and torch.equal(y, ours_y)


@pytest.mark.slow
def test_device_loop_on_a_cifar_shaped_source_through_an_interruption(tmp_path, monkeypatch):
    """32x32 images, 2 epochs of 4 steps at batch 32 (the last of 4 examples), stopped in the
    middle of the second epoch and resumed: the per-replicate loop's run, bitwise."""
    source, spec = random_cifar(100, 64, 32), spec_of("8it", 32, milestones="5it")
    ref = trained(tmp_path, "loop", spec, source, monkeypatch, "0")
    trained(tmp_path, "device", spec, source, monkeypatch, "1", stop_after=6)
    ours = trained(tmp_path, "device", spec, source, monkeypatch, "1")
    assert_same_run(ours, ref)
