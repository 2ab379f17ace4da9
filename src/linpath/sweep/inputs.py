"""What a sweep setting evaluates on, shared by `linpath sweep` and `linpath path`: the fixed
class-stratified subset of the split (with the class counts its standard errors need) and the
training batches that the recompute BatchNorm policy re-estimates statistics from."""

from __future__ import annotations

import torch

from linpath.data.source import EvalSet
from linpath.engine.subsets import class_counts, stratified_subset
from linpath.runtime.device import check_fits


def evaluation_subset(evalset: EvalSet, eval_examples: int) -> tuple[EvalSet, torch.Tensor | None]:
    """(the evaluated set, the split's examples per class) for --eval-examples N; the whole
    split and None when N is 0 or at least the split's size (no sampling, no standard error)."""
    if not eval_examples or eval_examples >= len(evalset):
        return evalset, None
    population = class_counts(evalset.labels)
    indices = stratified_subset(evalset.labels, eval_examples).to(evalset.labels.device)
    return evalset.subset(indices), population


def bn_training_batches(source, count: int, seed: int, batch_size: int, device) -> list[torch.Tensor]:
    """The first `count` training batches of `source` for `seed` (no augmentation): the same
    batches at every x, t and replicate, so recomputed statistics differ only by the weights."""
    stream = source.train_batches(seed, batch_size, device=device, augment=False)
    first = next(stream)[0]
    check_fits(
        count * first.numel() * first.element_size(),
        torch.device(device),
        f"--bn-batches {count} (x batch {batch_size} x {first[0].numel()} inputs x "
        f"{first.element_size()} bytes, held for the whole sweep)",
    )
    return [first] + [next(stream)[0] for _ in range(count - 1)]
