"""The float64 step check of tests/step_check.py (which tests/test_cuda.py applies to CUDA
training) on the CPU: fp32 steps pass it, whatever their order of summation; a planted real
difference (another batch, another augmentation, BatchNorm in eval mode, another learning rate)
fails it. And the per-replicate loop and the device loop's CPU stand-in pass it step by step."""

from __future__ import annotations

import pytest
import torch

from linpath.config.spec import write_spec
from linpath.io.rundir import RunDir
from linpath.train.log import read_log
from linpath.train.loop import train_replicate

from .step_check import Recorder, Sgd, Step, batches_of, check, check_trajectory, take
from .test_device_loop import random_cifar, spec_of

SGD = Sgd("cifar_resnet_20", 10, momentum=0.9, weight_decay=1e-4)


@pytest.fixture(scope="module")
def steps():
    """Two consecutive steps of ResNet-20 on 8x8 random images, batch 8, from init; and a spare batch."""
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(8, 3, 8, 8, generator=g) * 1.2 + 0.2, torch.randint(0, 10, (8,), generator=g))
        for _ in range(3)
    ]
    from linpath.models import build

    first = Step(build("cifar_resnet_20", 10, seed=0).state_dict(), {}, *batches[0], 0.1)
    after = take(SGD, first, torch.float32, channels_last=True)  # as the loops compute it
    second = Step(after.state, after.momentum, *batches[1], 0.1)
    return first, after, second, batches[2]


@pytest.mark.slow  # ~40 small ResNet-20 steps
def test_fp32_steps_pass_in_any_order_of_summation(steps):
    first, after, second, _ = steps
    assert check(SGD, first, after).failures == []
    shuffled = torch.randperm(8, generator=torch.Generator().manual_seed(5))
    for step in (first, second):
        for channels_last, order in [(True, None), (False, shuffled), (True, shuffled)]:
            result = take(SGD, step, torch.float32, channels_last, order)
            verdict = check(SGD, step, result)
            assert verdict.failures == [], (channels_last, order, verdict.errors, verdict.tolerances)


@pytest.mark.slow
def test_planted_real_differences_fail(steps):
    _, _, step, spare = steps
    x, y = step.inputs, step.labels
    shifted = x.clone()
    shifted[..., 1:] = x[..., :-1]  # every crop one pixel off
    planted = {
        "another batch (data order)": take(
            SGD, Step(step.state, step.momentum, *spare, step.lr), torch.float32, True
        ),
        "another augmentation": take(
            SGD, Step(step.state, step.momentum, shifted, y, step.lr), torch.float32, True
        ),
        "BatchNorm in eval mode": take(SGD, step, torch.float32, True, train=False),
        "another learning rate": take(SGD, Step(step.state, step.momentum, x, y, 0.01), torch.float32, True),
    }
    for what, result in planted.items():
        verdict = check(SGD, step, result)
        assert verdict.failures, what
        assert (
            max(e / verdict.tolerances[g] for g, e in verdict.errors.items() if verdict.tolerances[g]) > 10
        ), what


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["0", "1"], ids=["per-replicate-loop", "device-loop-stand-in"])
def test_cpu_training_passes_the_float64_check_step_by_step(tmp_path, monkeypatch, loop):
    """The real loop, CIFAR-shaped random data, augmentation on, two epochs of 3 steps at batch 32
    (the last of 6 examples), a milestone: every step within the check; the log's train loss
    the mean of the steps' float64 losses."""
    monkeypatch.setenv("LINPATH_DEVICE_LOOP", loop)
    source, spec = random_cifar(70, 40, 32), spec_of("6it", 32, milestones="4it")
    run = RunDir(tmp_path / spec.run_name)
    write_spec(run, spec)
    recorder = Recorder()
    train_replicate(spec, run, 0, source, progress=False, callbacks=(recorder,))
    init = torch.load(run.checkpoint(0, 0), weights_only=True)
    batches = batches_of(source, spec.train.seed, 32, 6, augment=True)
    lrs = [0.1] * 4 + [0.01] * 2
    failures, losses = check_trajectory(SGD, init, recorder.states, batches, lrs)
    assert failures == []
    for row, epoch_losses in zip(read_log(run, 0), (losses[:3], losses[3:])):
        assert float(row["train_loss"]) == pytest.approx(sum(epoch_losses) / 3, rel=1e-5)
