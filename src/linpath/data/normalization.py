"""Each named data set's input normalization, in one place: its loader, the data registry and the
command line's help read it here (no torch, so the help stays light)."""

from __future__ import annotations

# what every named data set's inputs go through (source.normalize): scaled to [0, 1], then
# (x - mean) / std per channel, as its presets train
_IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": _IMAGENET_MEAN_STD,
    "imagenet": _IMAGENET_MEAN_STD,
}


def normalization_text(name: str) -> str:
    """The named data set's input normalization, in words: 'x/255, then (x - 0.1307) / 0.3081'."""
    mean, std = NORMALIZATION[name]

    def values(v: tuple[float, ...]) -> str:
        return str(v[0]) if len(v) == 1 else f"({', '.join(map(str, v))})"

    return f"x/255, then (x - {values(mean)}) / {values(std)} per channel"
