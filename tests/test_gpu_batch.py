"""Default evaluation batches on CUDA from the free memory (runtime/gpu_batch.py); the CPU's unchanged."""

import torch

from linpath.data.source import EvalSet
from linpath.engine.evaluator import CPU_DENSE_BATCH, PathEvaluator
from linpath.models import build
from linpath.runtime.gpu_batch import fitting_batch, forward_bytes_per_example

GiB = 1 << 30


def test_the_whole_set_when_a_quarter_of_the_free_memory_holds_it():
    # ResNet-20 in fp32: about 0.2 MB of activations per 32x32 image; 80 GiB free
    assert fitting_batch(10_000, 200_000, 80 * GiB, floor=1024) == 10_000
    # 4 GiB free: a quarter holds 5,368 examples
    assert fitting_batch(10_000, 200_000, 4 * GiB, floor=1024) == GiB // 200_000
    # almost nothing free: never below the floor (the fixed batch it replaces) ...
    assert fitting_batch(10_000, 200_000, 1 << 20, floor=1024) == 1024
    # ... nor above the set
    assert fitting_batch(500, 200_000, 1 << 20, floor=1024) == 500
    # sizes unknown (no probe): the floor
    assert fitting_batch(10_000, None, 80 * GiB, floor=1024) == 1024
    assert fitting_batch(10_000, 200_000, None, floor=1024) == 1024
    assert fitting_batch(0, 200_000, GiB, floor=1024) == 1024


def test_no_probe_off_cuda():
    model = build("cifar_resnet_20", 10, seed=0).eval()
    assert forward_bytes_per_example(model, torch.zeros(2, 3, 32, 32)) is None


def test_cpu_default_batches_are_unchanged():
    images = EvalSet(torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))
    assert PathEvaluator(build("cifar_resnet_20", 10, seed=0), images).batch_size == 256
    flat = EvalSet(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))
    assert PathEvaluator(build("mnist_lenet_300_100", 10, seed=0), flat).batch_size == CPU_DENSE_BATCH
