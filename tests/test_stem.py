"""The linear stem found by tracing (engine/stem.py) on users' models that name nothing: where it
is found, linpath.path (which then mixes the stem) equals the plain loop of tests/oracle.py;
where the first operation is not linear in its parameters on the raw input, nothing is mixed
and the result still equals the plain loop."""

import pytest
import torch
from torch import nn

import linpath
from linpath.data.source import EvalSet
from linpath.engine.evaluator import Layout, PathEvaluator
from linpath.engine.stem import find_linear_stem
from tests.oracle import plain_path

XS = [0.0, 0.3, 0.7, 1.0, 1.2]


class UserMLP(nn.Module):
    """Flattens its input (a view), then Linear: the stem is `body.0`."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 5))

    def forward(self, x):
        return self.body(x.flatten(1))


class UserBNConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(1, 16, 3, padding=1)
        self.norm = nn.BatchNorm2d(16)
        self.second = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        h = torch.relu(self.norm(self.first(x)))
        return self.head(torch.relu(self.second(h)).mean((2, 3)))


class LearnedScaleFirst(nn.Module):
    """The input is multiplied by a learned scale before the Linear: θ(x)'s Linear sees an input
    that depends on x, so its output is not a mix of the endpoints' (no stem)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(64))
        self.fc = nn.Linear(64, 48)
        self.out = nn.Linear(48, 5)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x.flatten(1) * self.scale)))


class EmbeddingFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        self.fc = nn.Linear(16, 5)

    def forward(self, tokens):
        return self.fc(self.embed(tokens).mean(1))


def endpoints(make):
    torch.manual_seed(1)
    a, b = make(), make()
    with torch.no_grad():
        for net in (a, b):
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.5)
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
    return a.state_dict(), b.state_dict()


def inputs_for(make):
    g = torch.Generator().manual_seed(2)
    if make is EmbeddingFirst:
        inputs = torch.randint(0, 20, (90, 7), generator=g)
    else:
        inputs = torch.randn(90, 1, 8, 8, generator=g)
    return inputs, torch.randint(0, 5, (90,), generator=g)


CASES = [(UserMLP, "body.0"), (UserBNConvNet, "first"), (LearnedScaleFirst, None), (EmbeddingFirst, None)]


@pytest.mark.parametrize("make,stem", CASES, ids=[c[0].__name__ for c in CASES])
def test_the_traced_stem_and_the_plain_loop(make, stem):
    model = make()
    assert not hasattr(model, "linear_stem")
    inputs, labels = inputs_for(make)
    assert find_linear_stem(model, inputs[:2]) == stem
    engine = PathEvaluator(make(), EvalSet(inputs, labels), batch_size=40, layout=Layout(use_stem=True))
    assert engine.stem_name == stem and engine.uses_stem == (stem is not None)
    start, end = endpoints(make)
    want = plain_path(make, start, end, inputs, labels, XS)
    for bn in ("interpolate", "recompute"):
        # the engine with the traced stem (mixed where found), then linpath.path (auto: mixed
        # where the stem is at least 10 % of the work, as here for both found stems)
        got = engine.evaluate_path(start, end, XS, bn=bn, bn_batches=[inputs[:30], inputs[30:60]])
        ref = plain_path(make, start, end, inputs, labels, XS, bn, [inputs[:30], inputs[30:60]])
        assert [r.loss for r in got] == pytest.approx([r[0] for r in ref], abs=1e-5)
        assert [r.error for r in got] == pytest.approx([r[1] for r in ref], abs=1e-9)
    curve = linpath.path(make(), start, end, (inputs, labels), grid=XS, batch_size=40)
    assert curve.loss.tolist() == pytest.approx([r[0] for r in want], abs=1e-5)
    assert curve.error.tolist() == pytest.approx([r[1] for r in want], abs=1e-9)


def test_the_api_mixes_the_traced_stem(monkeypatch):
    """linpath.path on a user MLP goes through the mixed-stem branch (its stem outputs are
    computed once per endpoint, not once per point)."""
    from linpath.engine import evaluator

    calls = []
    original = evaluator.stem_outputs
    monkeypatch.setattr(evaluator, "stem_outputs", lambda *a: calls.append(1) or original(*a))
    start, end = endpoints(UserMLP)
    linpath.path(UserMLP(), start, end, inputs_for(UserMLP), grid=10)
    assert len(calls) == 2


def test_a_named_stem_overrides_tracing_and_none_turns_it_off():
    inputs, labels = inputs_for(UserMLP)
    named = UserMLP()
    named.linear_stem = None
    assert PathEvaluator(named, EvalSet(inputs, labels), layout=Layout(use_stem=True)).stem_name is None
    named.linear_stem = "body.0"
    assert PathEvaluator(named, EvalSet(inputs, labels), layout=Layout(use_stem=True)).stem_name == "body.0"


@pytest.mark.parametrize(
    "model,expected",
    [
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU()), "0"),
        (nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), "0"),  # the first one only
        (nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 4))), None),  # nonlinear in g, v
        (nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 4)), None),  # the Linear's input depends on θ
    ],
    ids=["linear", "two-linears", "weight-norm", "layernorm-first"],
)
def test_what_counts_as_a_stem(model, expected):
    assert find_linear_stem(model, torch.randn(2, 4)) == expected


def test_a_layer_called_twice_is_no_stem():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(torch.relu(self.fc(x)))

    assert find_linear_stem(Twice(), torch.randn(2, 4)) is None


def test_a_model_that_fails_on_the_example_has_no_stem():
    assert find_linear_stem(nn.Linear(3, 2), torch.randn(2, 4)) is None
