"""Replicates trained together (train/together.py) against each replicate trained alone by the
per-replicate loop (nn.Linear, torch.optim.SGD): the same checkpoints bit for bit, the same logs
but for the wall-clock column, through interruptions and when a run grows from 3 to 5 replicates.

The data are small random MNIST-shaped images (a 4-iteration epoch, so epoch ends, logs and
resume files happen within a few dozen steps); test_slow_* repeats the check on real MNIST.
Every test that trains through a run folder is marked slow; the in-memory step check is not."""

import pytest
import torch

from linpath.config.presets import preset
from linpath.config.spec import write_spec
from linpath.data.memory import InMemorySource
from linpath.data.source import Split
from linpath.io.rundir import RunDir
from linpath.models import build
from linpath.train.log import read_log
from linpath.train.loop import Branch, _State, train_replicate
from linpath.train.together import StackedLeNet, train_replicates


def random_mnist(n_train=500, n_test=200) -> InMemorySource:
    g = torch.Generator().manual_seed(0)

    def split(n):
        images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
        return Split(images, torch.randint(0, 10, (n,), generator=g))

    return InMemorySource("random", split(n_train), split(n_test), (0.1307,), (0.3081,), 10)


def spec_of(steps="24it", replicates=3, **train):
    overrides = {"training_steps": steps, "replicates": replicates, **train}
    return preset("mnist_lenet_300_100").with_overrides(overrides)


def new_run(tmp_path, name, spec) -> RunDir:
    run = RunDir(tmp_path / name / spec.run_name)
    write_spec(run, spec)
    return run


def alone(tmp_path, spec, source) -> RunDir:
    run = new_run(tmp_path, "alone", spec)
    for r in range(spec.replicates):
        train_replicate(spec, run, r, source, progress=False)
    return run


def max_difference(a: RunDir, b: RunDir, r: int) -> float:
    """The largest |Δθ| over every checkpoint of replicate r (the kept steps must be the same)."""
    assert a.saved_steps(r) == b.saved_steps(r)
    worst = 0.0
    for t in a.saved_steps(r):
        x = torch.load(a.checkpoint(r, t), weights_only=True)
        y = torch.load(b.checkpoint(r, t), weights_only=True)
        assert list(x) == list(y) and all(x[k].shape == y[k].shape for k in x)
        worst = max(worst, max((x[k] - y[k]).abs().max().item() for k in x))
    return worst


def same_logs(a: RunDir, b: RunDir, r: int) -> bool:
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    return strip(read_log(a, r)) == strip(read_log(b, r)) and len(read_log(a, r)) > 1


def test_stacked_steps_equal_torch_sgd_steps_of_each_model():
    """In memory, no run folder (the fast check): 6 steps of 3 LeNets with momentum and weight
    decay, stacked against nn.Linear + torch.optim.SGD one model at a time: bitwise equal."""
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(3, 32, 1, 28, 28, generator=g), torch.randint(0, 10, (3, 32), generator=g))
        for _ in range(6)
    ]
    sgd = dict(lr=0.05, momentum=0.9, weight_decay=1e-3)
    refs = [build("mnist_lenet_300_100", 10, seed=r) for r in range(3)]
    opts = [torch.optim.SGD(m.parameters(), **sgd) for m in refs]
    models = [build("mnist_lenet_300_100", 10, seed=r) for r in range(3)]
    states = [_State(m, torch.optim.SGD(m.parameters(), **sgd)) for m in models]  # fresh: no momentum yet
    stack = StackedLeNet(states, sgd["momentum"], sgd["weight_decay"])
    for x, y in batches:
        losses = stack.step(x, y, sgd["lr"])
        for r, (model, opt) in enumerate(zip(refs, opts)):
            loss = torch.nn.functional.cross_entropy(model(x[r]), y[r])
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.equal(losses[r], loss.detach())
    for ref, s in zip(refs, states):
        ours, theirs = s.model.state_dict(), ref.state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.slow
@pytest.mark.parametrize(
    "train",
    [{}, {"momentum": 0.9, "weight_decay": 1e-3, "lr": 0.05, "milestone_steps": "10it"}],
    ids=["preset", "momentum-wd-milestone"],
)
def test_replicates_trained_together_equal_each_trained_alone(tmp_path, train):
    source, spec = random_mnist(), spec_of(**train)
    ref = alone(tmp_path, spec, source)
    run = new_run(tmp_path, "together", spec)
    train_replicates(spec, run, range(3), source, progress=False)
    for r in range(3):
        assert max_difference(run, ref, r) == 0.0, r
        assert same_logs(run, ref, r) and run.done_marker(r).exists() and not run.resume_file(r).exists()


@pytest.mark.slow
def test_a_batched_run_interrupted_then_resumed_equals_one_trained_alone(tmp_path):
    source, spec = random_mnist(), spec_of(momentum=0.9)
    ref = alone(tmp_path, spec, source)
    run = new_run(tmp_path, "together", spec)
    train_replicates(spec, run, range(3), source, progress=False, stop_after=14)  # "killed" at 14
    assert all(run.resume_file(r).exists() and not run.done_marker(r).exists() for r in range(3))
    assert torch.load(run.resume_file(0), weights_only=True)["step"] == 12  # the last epoch end
    train_replicate(
        spec, run, 1, source, progress=False, branch=Branch(stop_after=18)
    )  # replicate 1 runs ahead, alone
    train_replicates(spec, run, range(3), source, progress=False)  # 0 and 2 together, 1 alone
    for r in range(3):
        assert max_difference(run, ref, r) == 0.0, r
        assert same_logs(run, ref, r)


@pytest.mark.slow
def test_a_run_extended_from_3_to_5_replicates_stays_consistent(tmp_path):
    source = random_mnist()
    three, five = spec_of(replicates=3), spec_of(replicates=5)
    assert three.run_name == five.run_name
    ref = alone(tmp_path, five, source)
    run = new_run(tmp_path, "together", three)
    train_replicates(three, run, range(3), source, progress=False)
    before = {r: {t: run.checkpoint(r, t).read_bytes() for t in run.saved_steps(r)} for r in range(3)}
    write_spec(run, five)
    train_replicates(five, run, range(5), source, progress=False)
    for r in range(3):  # untouched
        assert {t: run.checkpoint(r, t).read_bytes() for t in run.saved_steps(r)} == before[r]
    for r in range(5):
        assert max_difference(run, ref, r) == 0.0, r


@pytest.mark.slow
def test_unbatchable_specs_train_one_at_a_time(tmp_path, monkeypatch):
    """bf16 training and a single pending replicate fall back to the per-replicate loop."""
    import linpath.train.together as together

    calls = []
    monkeypatch.setattr(together, "_train_group", lambda *a, **k: calls.append(a))
    source = random_mnist()
    for spec in (spec_of("4it", precision="bf16"), spec_of("4it", replicates=1)):
        run = new_run(tmp_path, spec.run_name, spec)
        train_replicates(spec, run, range(spec.replicates), source, progress=False)
        assert all(run.done_marker(r).exists() for r in range(spec.replicates))
    assert calls == []


@pytest.mark.slow
def test_slow_together_equals_alone_on_real_mnist(tmp_path, mnist):
    """300 iterations of the preset on real MNIST, 3 replicates: max |Δθ| = 0 at every kept step."""
    spec = spec_of("300it")
    ref = alone(tmp_path, spec, mnist)
    run = new_run(tmp_path, "together", spec)
    train_replicates(spec, run, range(3), mnist, progress=False)
    for r in range(3):
        assert max_difference(run, ref, r) == 0.0, r
