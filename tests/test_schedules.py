"""The paper's schedules for CIFAR-10 and ImageNet: learning rate at chosen iterations, and the
kept checkpoint steps."""

import pytest

from linpath.config.presets import preset
from linpath.config.schedule import Schedule

CIFAR_TRAIN, IMAGENET_TRAIN = 50_000, 1_281_167


@pytest.mark.parametrize("name", ["cifar_resnet_20", "cifar_vgg_16"])
def test_cifar_schedule(name):
    s = Schedule.of(preset(name), CIFAR_TRAIN)
    assert s.iterations_per_epoch == 391 and s.total == 62_560
    assert s.milestones == (31_280, 46_920) and s.warmup == 0
    for step, lr in [
        (0, 0.1),
        (31_279, 0.1),
        (31_280, 0.01),
        (46_919, 0.01),
        (46_920, 0.001),
        (62_559, 0.001),
    ]:
        assert s.lr_at(step) == pytest.approx(lr), step
    kept = s.kept()
    assert kept[-1] == 62_560 and len(kept) == 73 + 1
    assert kept[:13] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2000] and kept[-2] == 62_000


def test_cifar_presets_hyperparameters():
    for name in ("cifar_resnet_20", "cifar_vgg_16"):
        spec = preset(name)
        assert (spec.data.dataset, spec.data.batch_size, spec.data.augment) == ("cifar10", 128, True)
        t = spec.train
        assert (t.lr, t.momentum, t.weight_decay, t.training_steps, t.gamma) == (0.1, 0.9, 1e-4, "160ep", 0.1)


def test_imagenet_schedule():
    spec = preset("imagenet_resnet_50")
    assert (spec.data.batch_size, spec.data.image_size, spec.train.momentum, spec.train.weight_decay) == (
        1024,
        224,
        0.9,
        1e-4,
    )
    s = Schedule.of(spec, IMAGENET_TRAIN)
    assert s.iterations_per_epoch == 1252 and s.total == 90 * 1252 and s.warmup == 5 * 1252
    assert s.milestones == (30 * 1252, 60 * 1252, 80 * 1252)
    for step, lr in [
        (0, 0.0),
        (3130, 0.2),
        (6259, 0.4 * 6259 / 6260),
        (6260, 0.4),
        (37_559, 0.4),
        (37_560, 0.04),
        (75_120, 0.004),
        (100_160, 0.0004),
        (112_679, 0.0004),
    ]:
        assert s.lr_at(step) == pytest.approx(lr), step
    kept = s.kept()
    assert kept[-1] == 112_680 and len(kept) == 1 + 11 + 111 + 1
