"""The engine against an independent plain loop (interpolate the state dict, load_state_dict
into a fresh model, evaluate), for LeNet and ResNet-20, per BatchNorm policy and precision.

Data are random (the engine's arithmetic does not care what the images show), and the two
endpoints are independent random networks with randomized BatchNorm statistics, so that every
part of the state matters.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from linpath.data.source import EvalSet
from linpath.engine.evaluator import Layout, PathEvaluator
from linpath.engine.scoring import Tally, classification_score, evaluate_model
from linpath.engine.subsets import stratified_subset
from linpath.models import MODELS, build
from tests.oracle import plain_path

XS = [0.0, 0.35, 1.0, 1.25]  # 1.25: extrapolation
BN_BATCHES = 3


def random_endpoint(name, seed):
    model = build(name, 10, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return {k: v.clone() for k, v in model.state_dict().items()}


def data(shape, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)


def plain_loop(name, start, end, inputs, labels, xs, bn, bn_batches):
    return plain_path(lambda: MODELS[name](10), start, end, inputs, labels, xs, bn, bn_batches or ())


CASES = {
    "mnist_lenet_300_100": ((1, 28, 28), 600),
    "cifar_resnet_20": ((3, 32, 32), 96),
}


# ResNet-20's cases are in the slow tier (each several times LeNet's); LeNet's stay fast
@pytest.fixture(
    scope="module",
    params=[pytest.param(n, marks=pytest.mark.slow) if n == "cifar_resnet_20" else n for n in CASES],
)
def case(request):
    name = request.param
    shape, n = CASES[name]
    inputs, labels = data(shape, n, 1)
    bn_batches = [data(shape, 32, 10 + i)[0] for i in range(BN_BATCHES)]
    start, end = random_endpoint(name, 1), random_endpoint(name, 2)
    refs = {
        bn: plain_loop(name, start, end, inputs, labels, XS, bn, bn_batches)
        for bn in ("interpolate", "recompute")
    }
    return name, inputs, labels, bn_batches, start, end, refs


def engine_results(case, bn, **kw):
    name, inputs, labels, bn_batches, start, end, _ = case
    engine = PathEvaluator(build(name, 10, seed=0), EvalSet(inputs, labels), **kw)
    return engine, engine.evaluate_path(start, end, XS, bn=bn, bn_batches=bn_batches)


@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
@pytest.mark.parametrize("use_stem", [False, True])
def test_engine_equals_the_plain_loop_in_fp32(case, bn, use_stem):
    _, _, labels, _, _, _, refs = case
    engine, results = engine_results(case, bn, batch_size=40, layout=Layout(use_stem=use_stem))
    assert engine.uses_stem == use_stem
    for x, res, (loss, error) in zip(XS, results, refs[bn]):
        assert res.loss == pytest.approx(loss, abs=1e-5), (x, bn)
        assert abs(res.error - error) <= 1.5 / len(labels), (x, bn)  # at most one argmax tie flips
        assert res.loss_se == 0.0 and res.error_se == 0.0  # the whole split: exact


@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
def test_stem_mixing_in_chunks_equals_the_plain_loop(case, bn):
    """stem_memory too small for the whole set: chunks of one batch, every x per chunk."""
    _, _, _, _, _, _, refs = case
    engine, results = engine_results(case, bn, batch_size=32, layout=Layout(use_stem=True, stem_memory=1))
    for res, (loss, _) in zip(results, refs[bn]):
        assert res.loss == pytest.approx(loss, abs=1e-5)


# bf16 autocast rounds weights and activations to 8 bits of mantissa (relative 2^-9 ≈ 0.2 %
# per operation); over a network's depth the loss moves by well under 2 %.
BF16_REL = 0.02


@pytest.mark.slow  # bf16 is emulated (slowly) on CPUs without AVX-512 BF16
@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
def test_bf16_is_close_to_the_fp32_plain_loop(case, bn):
    _, _, _, _, _, _, refs = case
    _, results = engine_results(case, bn, precision="bf16")
    for res, (loss, _) in zip(results, refs[bn]):
        assert res.loss == pytest.approx(loss, rel=BF16_REL)


def test_auto_stem_is_used_where_it_pays():
    lenet = PathEvaluator(build("mnist_lenet_300_100", 10), EvalSet(*data((1, 28, 28), 4, 0)))
    resnet = PathEvaluator(build("cifar_resnet_20", 10), EvalSet(*data((3, 32, 32), 4, 0)))
    assert lenet.uses_stem and lenet.stem_share > 0.8
    assert not resnet.uses_stem and resnet.stem_share < 0.05 and resnet.channels_last


def test_a_path_reuses_its_stem_outputs_across_calls(case):
    name, inputs, labels, _, start, end, refs = case
    engine = PathEvaluator(build(name, 10, seed=0), EvalSet(inputs, labels), layout=Layout(use_stem=True))
    path = engine.path(start, end)
    first = path.evaluate(XS[:2])
    again = path.evaluate(XS[2:])
    for res, (loss, _) in zip(first + again, refs["interpolate"]):
        assert res.loss == pytest.approx(loss, abs=1e-5)


@pytest.mark.slow
def test_paths_sharing_an_end_compute_its_stem_outputs_once(case, monkeypatch):
    """A sweep's paths share their end; its stem outputs are reused while its stem entries are
    unchanged, and recomputed when they change (here: the end's stem weight edited in place)."""
    import linpath.engine.evaluator as evaluator

    name, inputs, labels, _, start, end, refs = case
    engine = PathEvaluator(build(name, 10, seed=0), EvalSet(inputs, labels), layout=Layout(use_stem=True))
    calls = []
    real = evaluator.stem_outputs
    monkeypatch.setattr(evaluator, "stem_outputs", lambda *a: calls.append(a[2]) or real(*a))
    other = random_endpoint(name, 3)
    engine.evaluate_path(start, end, XS)
    results = engine.evaluate_path(other, end, XS)
    assert len(calls) == 3  # start, end, other: the end once
    expected = plain_loop(name, other, end, inputs, labels, XS, "interpolate", None)
    for res, (loss, _) in zip(results, expected):
        assert res.loss == pytest.approx(loss, abs=1e-5)
    edited = dict(end)
    stem_weight = f"{engine.stem_name}.weight"
    edited[stem_weight] = end[stem_weight] * 1.5
    results = engine.evaluate_path(start, edited, XS)
    assert len(calls) == 5
    expected = plain_loop(name, start, edited, inputs, labels, XS, "interpolate", None)
    for res, (loss, _) in zip(results, expected):
        assert res.loss == pytest.approx(loss, abs=1e-5)


def test_stratified_subset_is_fixed_and_proportional():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)[
        torch.randperm(1000, generator=torch.Generator().manual_seed(3))
    ]
    a = stratified_subset(labels, 100)
    assert torch.equal(a, stratified_subset(labels, 100))
    assert torch.bincount(labels[a]).tolist() == [50, 30, 20]
    assert len(set(a.tolist())) == 100
    assert torch.bincount(labels[stratified_subset(labels, 8)]).tolist() == [4, 2, 2]
    assert torch.equal(stratified_subset(labels, 5000), torch.arange(1000))


def test_standard_error_of_a_subset():
    """Stratified SE with finite-population correction: close to s/sqrt(n)·sqrt(1 - n/N)."""
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(2000, 10, generator=g), torch.randint(0, 10, (2000,), generator=g)
    population = torch.bincount(labels).double()
    idx = stratified_subset(labels, 400)
    tally = Tally(population, "cpu")
    tally.add(logits[idx], labels[idx], classification_score)
    res = tally.result()
    losses = F.cross_entropy(logits[idx], labels[idx], reduction="none").double()
    naive = float(losses.std() / math.sqrt(400) * math.sqrt(1 - 400 / 2000))
    assert res.examples == 400
    assert res.loss == pytest.approx(float(losses.mean()), rel=1e-12)
    assert res.loss_se == pytest.approx(naive, rel=0.1)
    assert 0 < res.error_se < 0.03
    full = evaluate_model(torch.nn.Identity(), EvalSet(logits, labels))
    assert full.loss_se == 0.0 and full.examples == 2000


# BatchNorm folding: the folded engine (fold_bn, the default) against the plain loop, for the
# two BatchNorm convnets, both policies, fp32; small sets so that it takes seconds.
FOLD_CASES = {"cifar_resnet_20": 64, "cifar_vgg_16": 40}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(name, marks=[pytest.mark.slow] if name == "cifar_vgg_16" else []) for name in FOLD_CASES
    ],
)
def fold_case(request):
    name = request.param
    n = FOLD_CASES[name]
    inputs, labels = data((3, 32, 32), n, 3)
    bn_batches = [data((3, 32, 32), 16, 20 + i)[0] for i in range(2)]
    start, end = random_endpoint(name, 3), random_endpoint(name, 4)
    refs = {
        bn: plain_loop(name, start, end, inputs, labels, XS, bn, bn_batches)
        for bn in ("interpolate", "recompute")
    }
    return name, inputs, labels, bn_batches, start, end, refs


@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
def test_folded_engine_equals_the_plain_loop_in_fp32(fold_case, bn):
    name, inputs, labels, bn_batches, start, end, refs = fold_case
    engine = PathEvaluator(build(name, 10, seed=0), EvalSet(inputs, labels), batch_size=32)
    assert engine.folds_bn and not engine.uses_stem
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in engine.model.modules())
    assert len(engine.folding.pairs) == bns  # every BatchNorm follows a convolution
    results = engine.evaluate_path(start, end, XS, bn=bn, bn_batches=bn_batches)
    for x, res, (loss, error) in zip(XS, results, refs[bn]):
        assert res.loss == pytest.approx(loss, abs=1e-5), (name, x, bn)
        assert abs(res.error - error) <= 1.5 / len(labels), (name, x, bn)
    # the engine's model still holds θ(x) unfolded (with BatchNorm), as without folding
    assert all(
        isinstance(m, torch.nn.BatchNorm2d) for n_, m in engine.model.named_modules() if n_.endswith("bn")
    )


def test_folding_keeps_the_mixed_stem_unfolded():
    name = "cifar_resnet_20"
    inputs, labels = data((3, 32, 32), 48, 5)
    start, end = random_endpoint(name, 5), random_endpoint(name, 6)
    ref = plain_loop(name, start, end, inputs, labels, XS, "interpolate", None)
    engine = PathEvaluator(build(name, 10, seed=0), EvalSet(inputs, labels), layout=Layout(use_stem=True))
    assert engine.uses_stem and engine.folds_bn
    assert "conv" not in [c for c, _ in _pair_names(engine)]  # the stem's BatchNorm stays
    for res, (loss, _) in zip(engine.evaluate_path(start, end, XS), ref):
        assert res.loss == pytest.approx(loss, abs=1e-5)


def _pair_names(engine):
    names = {id(m): n for n, m in engine.model.named_modules()}
    return [(names[id(conv)], names[id(bn)]) for conv, bn, _ in engine.folding.pairs]


class SharedConvOutput(torch.nn.Module):
    """conv1's output feeds its BatchNorm and also a skip connection: folding it would change
    the skip, so only conv2→bn2 may be folded."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        h = self.conv1(x)
        y = F.relu(self.bn1(h)) + h
        y = F.relu(self.bn2(self.conv2(y)))
        return self.fc(y.mean((2, 3)))


class Untraceable(SharedConvOutput):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = x * 1.0
        return super().forward(x)


def _random_state(cls, seed):
    torch.manual_seed(seed)
    model = cls()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(8, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(8, generator=g) + 0.5)
                m.weight.copy_(torch.rand(8, generator=g) + 0.5)
                m.bias.copy_(torch.randn(8, generator=g) * 0.3)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("cls", [SharedConvOutput, Untraceable])
def test_folding_is_skipped_where_not_exact(cls):
    inputs, labels = data((3, 8, 8), 64, 7)
    start, end = _random_state(cls, 1), _random_state(cls, 2)
    folded = PathEvaluator(cls(), EvalSet(inputs, labels), batch_size=16)
    plain = PathEvaluator(cls(), EvalSet(inputs, labels), batch_size=16, layout=Layout(fold_bn=False))
    assert not plain.folds_bn
    if cls is SharedConvOutput:
        assert _pair_names(folded) == [("conv2", "bn2")]
    else:
        assert not folded.folds_bn
    for a, b in zip(folded.evaluate_path(start, end, XS), plain.evaluate_path(start, end, XS)):
        assert a.loss == pytest.approx(b.loss, abs=1e-5)
    # and both equal loading the mixed state into the model
    model = cls()
    for x, res in zip(XS, plain.evaluate_path(start, end, XS)):
        model.load_state_dict(
            {k: torch.lerp(start[k], end[k], x) if start[k].is_floating_point() else end[k] for k in start}
        )
        assert res.loss == pytest.approx(evaluate_model(model, EvalSet(inputs, labels)).loss, abs=1e-5)


def _tiny_convnet():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )


def _tiny_states():
    a, b = _tiny_convnet(), _tiny_convnet()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        b[1].running_mean.uniform_(-0.5, 0.5)
        b[1].running_var.uniform_(0.5, 2.0)
    return a.state_dict(), b.state_dict()


@pytest.mark.slow  # compiles a graph (a C++ toolchain run)
def test_compiled_engine_equals_the_eager_engine(recwarn):
    g = torch.Generator().manual_seed(1)
    evalset = EvalSet(torch.randn(48, 3, 8, 8, generator=g), torch.randint(0, 10, (48,), generator=g))
    start, end = _tiny_states()
    xs = [0.0, 0.4, 1.0]
    # no stem mixing: the compiled network is the whole one (compile is not used with a mixed stem)
    eager = PathEvaluator(
        _tiny_convnet(), evalset, batch_size=16, layout=Layout(use_stem=False)
    ).evaluate_path(start, end, xs)
    engine = PathEvaluator(
        _tiny_convnet(), evalset, batch_size=16, compile=True, layout=Layout(use_stem=False)
    )
    compiled = engine.evaluate_path(start, end, xs)
    if any("torch.compile failed" in str(w.message) for w in recwarn):
        pytest.skip("torch.compile is not usable on this machine (it fell back to eager)")
    assert engine._compiled is not None  # the compiled module evaluated, not the eager fallback
    for a, b in zip(eager, compiled):
        assert b.loss == pytest.approx(a.loss, abs=1e-5) and b.error == a.error
    assert eager[0].loss != pytest.approx(
        eager[1].loss, abs=1e-3
    )  # in-place updates reach the compiled graph


def test_a_failing_compile_falls_back_to_eager(monkeypatch):

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: Broken())
    g = torch.Generator().manual_seed(1)
    evalset = EvalSet(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))
    start, end = _tiny_states()
    with pytest.warns(UserWarning, match="torch.compile failed"):
        got = PathEvaluator(
            _tiny_convnet(), evalset, compile=True, layout=Layout(use_stem=False)
        ).evaluate_path(start, end, [0.5])
    want = PathEvaluator(_tiny_convnet(), evalset, layout=Layout(use_stem=False)).evaluate_path(
        start, end, [0.5]
    )
    assert got[0].loss == want[0].loss
