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
from torch.utils.data import DataLoader, TensorDataset

from linpath.data.memory import EvalSet
from linpath.evaluate import PathEvaluator, Tally, classification_score, evaluate_model, stratified_subset
from linpath.models import MODELS, build

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


@torch.no_grad()
def plain_loop(name, start, end, inputs, labels, xs, bn, bn_batches):
    """What a user would write: mix the state dicts, load them into a fresh model, evaluate
    with a DataLoader; recompute resets the statistics and averages them over the batches."""
    out = []
    for x in xs:
        state = {k: (1 - x) * start[k] + x * end[k] if start[k].is_floating_point() else end[k] for k in start}
        model = MODELS[name](10)
        model.load_state_dict(state)
        if bn == "recompute":
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None
            model.train()
            for b in bn_batches:
                model(b)
        model.eval()
        loss, wrong = 0.0, 0
        for xb, yb in DataLoader(TensorDataset(inputs, labels), batch_size=50):
            logits = model(xb)
            loss += F.cross_entropy(logits, yb, reduction="sum").item()
            wrong += (logits.argmax(1) != yb).sum().item()
        out.append((loss / len(labels), wrong / len(labels)))
    return out


CASES = {
    "mnist_lenet_300_100": ((1, 28, 28), 600),
    "cifar_resnet_20": ((3, 32, 32), 96),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    name = request.param
    shape, n = CASES[name]
    inputs, labels = data(shape, n, 1)
    bn_batches = [data(shape, 32, 10 + i)[0] for i in range(BN_BATCHES)]
    start, end = random_endpoint(name, 1), random_endpoint(name, 2)
    refs = {bn: plain_loop(name, start, end, inputs, labels, XS, bn, bn_batches) for bn in ("interpolate", "recompute")}
    return name, inputs, labels, bn_batches, start, end, refs


def engine_results(case, bn, **kw):
    name, inputs, labels, bn_batches, start, end, _ = case
    engine = PathEvaluator(build(name, 10, seed=0), EvalSet(inputs, labels), **kw)
    return engine, engine.evaluate_path(start, end, XS, bn=bn, bn_batches=bn_batches)


@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
@pytest.mark.parametrize("use_stem", [False, True])
def test_engine_equals_the_plain_loop_in_fp32(case, bn, use_stem):
    _, _, labels, _, _, _, refs = case
    engine, results = engine_results(case, bn, use_stem=use_stem, batch_size=40)
    assert engine.uses_stem == use_stem
    for x, res, (loss, error) in zip(XS, results, refs[bn]):
        assert res.loss == pytest.approx(loss, abs=1e-5), (x, bn)
        assert abs(res.error - error) <= 1.5 / len(labels), (x, bn)  # at most one argmax tie flips
        assert res.loss_se == 0.0 and res.error_se == 0.0  # the whole split: exact


@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
def test_stem_mixing_in_chunks_equals_the_plain_loop(case, bn):
    """stem_memory too small for the whole set: chunks of one batch, every x per chunk."""
    _, _, _, _, _, _, refs = case
    engine, results = engine_results(case, bn, use_stem=True, batch_size=32, stem_memory=1)
    for res, (loss, _) in zip(results, refs[bn]):
        assert res.loss == pytest.approx(loss, abs=1e-5)


# bf16 autocast rounds weights and activations to 8 bits of mantissa (relative 2^-9 ≈ 0.2 %
# per operation); over a network's depth the loss moves by well under 2 %.
BF16_REL = 0.02


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
    engine = PathEvaluator(build(name, 10, seed=0), EvalSet(inputs, labels), use_stem=True)
    path = engine.path(start, end)
    first = path.evaluate(XS[:2])
    again = path.evaluate(XS[2:])
    for res, (loss, _) in zip(first + again, refs["interpolate"]):
        assert res.loss == pytest.approx(loss, abs=1e-5)


def test_stratified_subset_is_fixed_and_proportional():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)[torch.randperm(1000, generator=torch.Generator().manual_seed(3))]
    a = stratified_subset(labels, 100)
    assert torch.equal(a, stratified_subset(labels, 100))
    assert torch.bincount(labels[a]).tolist() == [50, 30, 20]
    assert len(set(a.tolist())) == 100
    assert torch.bincount(labels[stratified_subset(labels, 7)]).sum() == 7
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
