"""On an NVIDIA GPU: the engine and training on CUDA agree with the CPU, torchrun initializes
nccl and gloo, and the compiled engine works. Skipped without CUDA; run by
benchmarks/gpu_check.sh (see docs/gpu.md).

Tolerances: fp32 on CUDA is IEEE fp32 (linpath turns TF32 off for fp32 work), so it agrees with
the CPU to rounding: 1e-4 absolute on a mean loss of the engine. Training is checked step by
step against a float64 reference of the same step (tests/step_check.py): over several steps,
train-mode BatchNorm, momentum and lr 0.1 amplify rounding beyond any fixed tolerance. bf16 on CUDA is compared with fp32 on the CPU:
within BF16_LOSS_TOL (absolute, on a mean cross-entropy of about 2.3, i.e. ~0.4 %), the size of
bf16's 8-bit mantissa over ~20 layers; the CPU engine's bf16 differs from its fp32 by ~2e-4 on
the same kind of path (benchmarks/README.md).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from linpath.config.presets import preset
from linpath.config.spec import write_spec
from linpath.data import cifar10
from linpath.data.memory import InMemorySource
from linpath.data.source import EvalSet, Split
from linpath.engine.evaluator import PathEvaluator
from linpath.io.rundir import RunDir
from linpath.models import build
from linpath.train import device_loop
from linpath.train.log import read_log
from linpath.train.loop import train_replicate

from . import step_check
from .step_check import Recorder

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)"),
]

FP32_LOSS_TOL = 1e-4
BF16_LOSS_TOL = 1e-2
MODEL = "cifar_resnet_20"
XS = [0.0, 0.25, 0.5, 0.75, 1.0]


def endpoint(seed: int) -> dict:
    """A ResNet-20 state with random weights and random BatchNorm running statistics."""
    model = build(MODEL, 10, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(512, 3, 32, 32, generator=g)
    labels = torch.randint(0, 10, (512,), generator=g)
    bn_batches = [torch.randn(128, 3, 32, 32, generator=g) for _ in range(2)]
    return inputs, labels, bn_batches, endpoint(1), endpoint(2)


def path_results(data, device: str, precision: str = "fp32", bn: str = "interpolate", compile=False):
    inputs, labels, bn_batches, start, end = data
    evalset = EvalSet(inputs.to(device), labels.to(device))
    engine = PathEvaluator(build(MODEL, 10, seed=0), evalset, precision=precision, compile=compile)
    results = engine.evaluate_path(
        start, end, XS, bn=bn, bn_batches=bn_batches if bn == "recompute" else None
    )
    return engine, results


def assert_close(cpu, gpu, loss_tol: float, error_tol: float = 2 / 512 + 1e-9):
    """Losses within loss_tol; errors within error_tol (a prediction may flip where two logits
    are nearly tied: by default two of the 512 examples)."""
    for x, a, b in zip(XS, cpu, gpu):
        assert abs(a.loss - b.loss) <= loss_tol, (x, a.loss, b.loss)
        assert abs(a.error - b.error) <= error_tol, (x, a.error, b.error)


@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
def test_fp32_engine_on_cuda_matches_the_cpu_engine(data, bn):
    _, cpu = path_results(data, "cpu", bn=bn)
    engine, gpu = path_results(data, "cuda", bn=bn)
    assert engine.device.type == "cuda"
    assert_close(cpu, gpu, FP32_LOSS_TOL)


def test_bf16_engine_on_cuda_is_within_the_documented_tolerance(data):
    _, cpu = path_results(data, "cpu")
    _, gpu = path_results(data, "cuda", precision="bf16")
    assert_close(cpu, gpu, BF16_LOSS_TOL, error_tol=0.05)  # up to 5 % of predictions may flip
    assert max(abs(a.loss - b.loss) for a, b in zip(cpu, gpu)) > 0  # bf16 did run in bf16


def test_compiled_engine_on_cuda_matches_the_cpu_engine(data):
    _, cpu = path_results(data, "cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine, gpu = path_results(data, "cuda", compile=True)
    fallbacks = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    assert not fallbacks, fallbacks
    assert engine._compiled is not None  # it evaluated compiled, not eagerly after a failure
    assert_close(cpu, gpu, FP32_LOSS_TOL)


def random_cifar(n_train: int, n_test: int) -> InMemorySource:
    g = torch.Generator().manual_seed(0)

    def split(n):
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        return Split(images, torch.randint(0, 10, (n,), generator=g))

    return InMemorySource(
        "random",
        split(n_train),
        split(n_test),
        cifar10.MEAN,
        cifar10.STD,
        10,
        augment_fn=cifar10.crop_flip(4),
    )


@pytest.fixture(scope="module")
def cuda_training(tmp_path_factory):
    """9 steps of the cifar_resnet_20 preset on CUDA through the device loop, every step's state
    recorded: 260 random 32x32 examples at batch 128 (epochs of 128, 128, 4: a short last batch),
    augmentation on, lr x0.1 from step 6. Steps 0-1 warm up eagerly, 3-4 and 6-7 replay two CUDA
    graphs (one per learning rate; MIN_GRAPH_STEPS lowered to 2), the short batches run eagerly."""
    seen = []
    train = device_loop.train
    spec = preset(MODEL).with_overrides({"training_steps": "9it", "replicates": 1, "milestone_steps": "6it"})
    source = random_cifar(260, 256)
    run = RunDir(tmp_path_factory.mktemp("cuda-training") / spec.run_name)
    write_spec(run, spec)
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as m, warnings.catch_warnings():
        m.setattr(device_loop, "MIN_GRAPH_STEPS", 2)
        m.setattr(device_loop, "train", lambda *a, **k: seen.append(train(*a, **k)))
        warnings.simplefilter("error", device_loop.DeviceLoopWarning)  # no fallback to eager
        train_replicate(spec, run, 0, source, device="cuda", progress=False, callbacks=(recorder,))
    (stats,) = seen
    return spec, source, run, recorder, stats


def test_training_steps_on_cuda_match_the_cpu(cuda_training):
    """Every CUDA step against a float64 reference of the same step from the same state on the
    CPU, within the rounding of fp32 for that step (tests/step_check.py; the CPU's own steps
    pass the same check, tests/test_step_check.py). Also: the log's train loss is the mean of
    the steps' losses, and the checkpoints on disk are the states checked."""
    spec, source, run, recorder, _ = cuda_training
    init = torch.load(run.checkpoint(0, 0), weights_only=True)
    batches = step_check.batches_of(source, spec.train.seed, 128, 9, augment=True)
    sgd = step_check.Sgd(MODEL, 10, spec.train.momentum, spec.train.weight_decay)
    failures, losses = step_check.check_trajectory(
        sgd, init, recorder.states, batches, [0.1] * 6 + [0.01] * 3
    )
    assert failures == []
    for row, epoch in zip(read_log(run, 0), (losses[0:3], losses[3:6], losses[6:9])):
        assert float(row["train_loss"]) == pytest.approx(sum(epoch) / 3, rel=1e-4)
    for t in run.saved_steps(0)[1:]:
        saved = torch.load(run.checkpoint(0, t), weights_only=True)
        assert all(torch.equal(saved[k], recorder.states[t][0][k]) for k in saved), t


def test_cuda_graph_replays_match_eager_steps(cuda_training):
    """Both graphs were captured and replayed (no fallback), and each one's first replay agreed
    with the eager step from the same state and batch within the step check's floor (the device
    loop compares them: relative L2 of the state changes, per group)."""
    stats = cuda_training[-1]
    assert (stats.captures, stats.graphed, stats.eager, stats.graphs_off) == (2, 4, 5, None), stats
    assert len(stats.replay_differences) == 2
    assert all(d <= step_check.FLOOR for d in stats.replay_differences), stats.replay_differences


def test_a_capture_that_fails_on_cuda_leaves_training_right(tmp_path, monkeypatch):
    """A real capture failure (a host synchronization inside the captured step) gives one warning,
    and the steps go on eagerly from an untouched state: every step within the float64 check."""

    def syncing_capture(static, lr):
        graph = torch.cuda.CUDAGraph()
        static.rep.state.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            static.run(lr)
            static.acc.item()  # not allowed while capturing
        return graph

    monkeypatch.setattr(device_loop, "MIN_GRAPH_STEPS", 2)
    monkeypatch.setattr(device_loop, "capture", syncing_capture)
    seen = []
    train = device_loop.train
    monkeypatch.setattr(device_loop, "train", lambda *a, **k: seen.append(train(*a, **k)))
    spec = preset(MODEL).with_overrides({"training_steps": "6it", "replicates": 1})
    source = random_cifar(260, 256)
    run = RunDir(tmp_path / spec.run_name)
    write_spec(run, spec)
    recorder = Recorder()
    with pytest.warns(device_loop.DeviceLoopWarning, match="capture failed"):
        train_replicate(spec, run, 0, source, device="cuda", progress=False, callbacks=(recorder,))
    (stats,) = seen
    assert (
        stats.graphed == 0 and stats.graphs_off.startswith("capture failed") and run.done_marker(0).exists()
    )
    init = torch.load(run.checkpoint(0, 0), weights_only=True)
    batches = step_check.batches_of(source, spec.train.seed, 128, 6, augment=True)
    sgd = step_check.Sgd(MODEL, 10, spec.train.momentum, spec.train.weight_decay)
    assert step_check.check_trajectory(sgd, init, recorder.states, batches, [0.1] * 6)[0] == []


def test_sweep_batch_on_cuda_is_the_whole_set(data):
    engine, _ = path_results(data, "cuda")
    assert engine.batch_size >= len(data[1]) == 512


TORCHRUN_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from linpath.models import build

    backend = sys.argv[1]
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    assert os.environ["WORLD_SIZE"] == "1"
    torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    assert dist.get_backend() == backend
    t = torch.full((4,), 2.0, device=f"cuda:{local_rank}")
    dist.all_reduce(t)
    assert t.tolist() == [2.0] * 4
    box = ["from rank 0" if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    assert box[0] == "from rank 0"
    # what linpath's training loop does under torchrun: DDP on the rank's GPU, one SGD step
    model = build("cifar_resnet_20", 10, seed=0).cuda()
    net = DistributedDataParallel(model, device_ids=[local_rank])
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 3, 32, 32, device="cuda"), torch.randint(0, 10, (16,), device="cuda")
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    torch.cuda.synchronize()
    dist.barrier()
    dist.destroy_process_group()
    print(f"OK {backend}")
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("backend", ["nccl", "gloo"])
def test_torchrun_with_one_process_initializes(backend, tmp_path):
    if not torch.distributed.is_available() or (
        backend == "nccl" and not torch.distributed.is_nccl_available()
    ):
        pytest.fail(f"{backend} is not available in this torch build")
    script = tmp_path / "ddp_check.py"
    script.write_text(TORCHRUN_SCRIPT)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node=1",
            "--nnodes=1",
            "--master-addr=127.0.0.1",
            f"--master-port={free_port()}",
            str(script),
            backend,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert f"OK {backend}" in done.stdout
