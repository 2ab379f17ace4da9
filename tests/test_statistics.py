"""The standard errors of evaluation subsets, checked against a simulation of the design."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from linpath.engine.scoring import stratified_se
from linpath.engine.subsets import stratified_subset
from linpath.errors import LinpathError


def _population(seed=0, n=4000, classes=10):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    # per-example values whose spread differs by class (loss-like, and a rare 0/1 error)
    loss = rng.gamma(shape=1 + labels, scale=0.2)
    error = (rng.random(n) < 0.03 + 0.01 * labels).astype(float)
    return torch.as_tensor(labels), {"loss": loss, "error": error}


def _se_of(labels, values, index, population):
    lab = labels[index]
    v = torch.as_tensor(values[index.numpy()])
    count = torch.bincount(lab, minlength=len(population)).double()
    total = torch.zeros(len(population), dtype=torch.float64).index_add_(0, lab, v)
    total_sq = torch.zeros(len(population), dtype=torch.float64).index_add_(0, lab, v * v)
    return stratified_se(count, total, total_sq, population)


@pytest.mark.parametrize("n", [30, 200, 1000])
@pytest.mark.parametrize("quantity", ["loss", "error"])
def test_standard_error_matches_the_spread_of_repeated_subsets(n, quantity):
    labels, values = _population()
    population = torch.bincount(labels).double()
    means, ses = [], []
    for seed in range(120):
        index = stratified_subset(labels, n, seed=seed)
        means.append(values[quantity][index.numpy()].mean())
        ses.append(_se_of(labels, values[quantity], index, population))
    empirical, reported = float(np.std(means, ddof=1)), float(np.sqrt(np.mean(np.square(ses))))
    assert reported == pytest.approx(empirical, rel=0.25), (empirical, reported)
    # never a zero standard error where the subset itself varies (was: 0 with one example in a class)
    assert all(se > 0 for se, m in zip(ses, means) if 0 < m < 1 or quantity == "loss")


def test_the_whole_split_has_zero_standard_error():
    labels, values = _population(n=500)
    population = torch.bincount(labels).double()
    assert _se_of(labels, values["loss"], torch.arange(500), population) == 0.0


def test_a_class_with_one_example_is_refused_not_given_zero_error():
    labels, _ = _population(n=1000)
    with pytest.raises(LinpathError, match="fewer than 2 examples"):
        stratified_subset(labels, 15)


def test_one_example_per_class_has_no_standard_error():
    count = torch.ones(3, dtype=torch.float64)
    se = stratified_se(
        count, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 4.0, 9.0]), torch.full((3,), 10.0)
    )
    assert math.isnan(se)


@pytest.mark.parametrize("pending", [1, 3, 1 << 15])
def test_tally_sums_by_class_whatever_the_pending_size(pending, monkeypatch):
    """The class sums a tally keeps, however many examples wait before being summed, are
    those written out with numpy: counts, Σ loss, Σ loss², Σ errors per class."""
    from linpath.engine.scoring import Tally, classification_score, make_tally

    monkeypatch.setattr(Tally, "PENDING_EXAMPLES", pending)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (50,), generator=g)
    outputs = torch.randn(50, 4, generator=g) * 2
    tally = make_tally(labels, None)
    for i in range(0, 50, 7):
        tally.add(outputs[i : i + 7], labels[i : i + 7], classification_score)
    result = tally.result()
    logits, y = outputs.double().numpy(), labels.numpy()
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    loss = -log_p[np.arange(50), y]
    wrong = (logits.argmax(1) != y).astype(float)
    expected = np.zeros((5, 4))
    for values, row in ((np.ones(50), 0), (loss, 1), (loss**2, 2), (wrong, 3), (wrong, 4)):
        np.add.at(expected[row], y, values)
    assert np.allclose(tally.sums.numpy(), expected, rtol=1e-6, atol=1e-9)
    assert result.loss == pytest.approx(loss.mean(), rel=1e-6) and result.error == wrong.mean()
