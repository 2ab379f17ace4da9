"""The paper's settings, each defined in one place: its spec (model, data, hyperparameters,
OpenLTH's defaults), the paper's claims about it, and the starting steps Figure 2 draws.

Adding a setting is one entry in PRESETS (plus a model or data set in their registries if
it needs a new one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from linpath.config.spec import DataSpec, ModelSpec, Spec, TrainSpec
from linpath.errors import LinpathError

DEFAULT_FIGURE2_STEPS = (0, 16, 128, 1024, 2000, 8000)


@dataclass(frozen=True)
class PaperClaims:
    """What Frankle (2020) reports for a setting, as numbers a run can be checked against."""

    setting: str  # a title, e.g. "ResNet-20 on CIFAR-10"
    accuracy: tuple[float, float]  # expected range of final test accuracy
    monotone_from_init: bool
    barriers: tuple[int, int] | None  # (appear from about t, vanish after about t), or None
    training_steps: str  # the paper's training length: the accuracy claim needs the full schedule


@dataclass(frozen=True)
class Preset:
    spec: Spec
    claims: PaperClaims | None = None
    figure2_steps: tuple[int, ...] = DEFAULT_FIGURE2_STEPS


# CIFAR-10 (both networks): 160 epochs = 62,560 iterations, lr x0.1 at epochs 80 and 120.
_CIFAR_DATA = DataSpec(dataset="cifar10", batch_size=128, augment=True)
_CIFAR_TRAIN = TrainSpec(
    lr=0.1, momentum=0.9, weight_decay=1e-4, training_steps="160ep", milestone_steps="80ep,120ep", gamma=0.1
)

_PRESETS = [
    # OpenLTH's defaults for LeNet-300-100 on MNIST: 40 epochs = 18,760 iterations at batch 128.
    Preset(
        Spec(
            preset="mnist_lenet_300_100",
            data=DataSpec(dataset="mnist", batch_size=128, augment=False),
            model=ModelSpec(model="mnist_lenet_300_100"),
            train=TrainSpec(lr=0.1, momentum=0.0, weight_decay=0.0, training_steps="40ep"),
        ),
        PaperClaims("LeNet-300-100 on MNIST", (0.978, 0.984), True, None, "40ep"),
    ),
    Preset(
        Spec(
            preset="cifar_resnet_20",
            data=_CIFAR_DATA,
            model=ModelSpec(model="cifar_resnet_20"),
            train=_CIFAR_TRAIN,
        ),
        PaperClaims("ResNet-20 on CIFAR-10", (0.90, 0.925), False, (16, 2000), "160ep"),
    ),
    # A CPU-sized ResNet-20 study: 8 epochs (3,128 iterations), the milestones scaled to 4 and 6
    # epochs, one replicate; about 70 minutes on a 2-core AVX2 CPU (see docs/results/).
    Preset(
        Spec(
            preset="cifar_resnet_20_short",
            data=_CIFAR_DATA,
            model=ModelSpec(model="cifar_resnet_20"),
            train=dataclasses.replace(_CIFAR_TRAIN, training_steps="8ep", milestone_steps="4ep,6ep"),
            replicates=1,
        ),
        PaperClaims("ResNet-20 on CIFAR-10", (0.90, 0.925), False, (16, 2000), "160ep"),
    ),
    Preset(
        Spec(
            preset="cifar_vgg_16", data=_CIFAR_DATA, model=ModelSpec(model="cifar_vgg_16"), train=_CIFAR_TRAIN
        ),
        PaperClaims("VGG-16 on CIFAR-10", (0.925, 0.945), False, (16, 8000), "160ep"),
    ),
    # ImageNet: batch 1024, 90 epochs, 5 warm-up epochs, lr x0.1 at epochs 30, 60, 80.
    Preset(
        Spec(
            preset="imagenet_resnet_50",
            data=DataSpec(dataset="imagenet", batch_size=1024, augment=True, image_size=224),
            model=ModelSpec(model="imagenet_resnet_50"),
            train=TrainSpec(
                lr=0.4,
                momentum=0.9,
                weight_decay=1e-4,
                training_steps="90ep",
                milestone_steps="30ep,60ep,80ep",
                gamma=0.1,
                warmup_steps="5ep",
            ),
        ),
        PaperClaims("ResNet-50 on ImageNet", (0.75, 0.77), False, (256, 50000), "90ep"),
    ),
]

PRESETS: dict[str, Preset] = {p.spec.preset: p for p in _PRESETS}


def preset(name: str) -> Spec:
    """The named preset's spec."""
    if name not in PRESETS:
        raise LinpathError(f"unknown preset {name!r} (known: {', '.join(PRESETS)}; see 'linpath presets')")
    return PRESETS[name].spec


def claims_of(name: str) -> PaperClaims | None:
    return PRESETS[name].claims if name in PRESETS else None


def figure2_steps_of(name: str) -> tuple[int, ...]:
    return PRESETS[name].figure2_steps if name in PRESETS else DEFAULT_FIGURE2_STEPS
