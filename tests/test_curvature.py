"""Curvature along a path (engine/curvature.py, engine/spectrum.py) against independent oracles:
the dense Hessian of a tiny MLP and of a tiny BatchNorm convnet in eval mode
(torch.autograd.functional.hessian: its eigenvalues, trace and uᵀHu), finite differences of the
sweep's own loss along the path (the engine's evaluate_path, and a float64 plain loop), and
explicit matrices for Lanczos and Hutch++."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import hessian
from torch.func import functional_call

from linpath.data.source import EvalSet
from linpath.engine.curvature import PathCurvature, differentiable, streamed_points
from linpath.engine.evaluator import Layout, PathEvaluator
from linpath.engine.lazy_states import DictState, StateMix
from linpath.engine.spectrum import hutchpp, lanczos
from linpath.errors import LinpathError
from linpath.sweep.setting import SweepSetting
from tests.oracle import mix


def mlp(act=nn.ReLU) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 5), act(), nn.Linear(5, 3))


def bn_convnet(act=nn.ReLU) -> nn.Module:
    """ReLU for the dense Hessians; a smooth activation (GELU) where finite differences are the
    oracle (a ReLU's kinks along the path make a second difference jump)."""
    return nn.Sequential(
        nn.Conv2d(2, 3, 3),
        nn.BatchNorm2d(3),
        act(),
        nn.Conv2d(3, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 3),
    )


def states(make, seed: int, noise: float = 0.0) -> tuple[dict, dict]:
    """Two float64 states of a model, BatchNorm statistics made non-trivial; `noise` added to every
    parameter, so that those a model initializes alike (a scale of ones) differ too."""
    out = []
    for s in (seed, seed + 1):
        torch.manual_seed(s)
        model = make().double()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                if m.affine:
                    m.weight.data.uniform_(0.5, 1.5)
                    m.bias.data.normal_(0, 0.2)
        if noise:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(noise * torch.randn_like(p))
        out.append({k: v.clone() for k, v in model.state_dict().items()})
    return out[0], out[1]


def data(shape, n=40, seed=7) -> EvalSet:
    g = torch.Generator().manual_seed(seed)
    return EvalSet(
        torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)
    )


def engine(make, evalset, batch_size=16, **options) -> PathEvaluator:
    return PathEvaluator(
        make().double(), evalset, batch_size=batch_size, layout=Layout(channels_last=False, **options)
    )


def dense_hessian(make, state: dict, evalset: EvalSet) -> tuple[list[str], torch.Tensor]:
    """The Hessian of the mean cross-entropy over the parameters, buffers held (eval mode)."""
    model = make().double().eval()
    names = [k for k, _ in model.named_parameters()]
    shapes = [state[k].shape for k in names]
    flat = torch.cat([state[k].reshape(-1) for k in names])

    def loss(vector):
        parts = torch.split(vector, [math.prod(s) for s in shapes])
        given = {**state, **{k: p.view(s) for k, p, s in zip(names, parts, shapes)}}
        return F.cross_entropy(functional_call(model, given, (evalset.inputs,)), evalset.labels)

    return names, hessian(loss, flat)


def flat(state: dict, names: list[str]) -> torch.Tensor:
    return torch.cat([state[k].reshape(-1) for k in names])


@pytest.mark.slow
@pytest.mark.parametrize("make,shape", [(mlp, (12,)), (bn_convnet, (2, 6, 6))])
def test_curvature_matches_the_dense_hessian(make, shape):
    start, end = states(make, 0)
    evalset = data(shape)
    x = 0.3
    names, H = dense_hessian(make, mix(start, end, x), evalset)
    u = flat(end, names) - flat(start, names)
    curve = PathCurvature(engine(make, evalset, batch_size=64), start, end, moving="weights")
    for method in ("taylor", "forward", "reverse"):
        curve.method = method
        (point,) = curve.points([x])
        assert point.curvature == pytest.approx(float(u @ H @ u), rel=1e-9, abs=1e-12)
        assert point.units == len(evalset)
    exact = torch.linalg.eigvalsh(H).flip(0)
    spectrum = curve.spectrum(x, k=3, steps=60)
    np.testing.assert_allclose(spectrum.eigenvalues, exact[:3].numpy(), rtol=1e-7)
    assert max(spectrum.residuals) < 1e-6 * float(exact[0])
    short = curve.spectrum(
        x, k=2, steps=8
    )  # few steps: each Ritz value within its residual of some eigenvalue
    for value, residual in zip(short.eigenvalues, short.residuals):
        assert float((exact - value).abs().min()) <= residual + 1e-10
    trace = curve.trace(x, matvecs=90)
    assert 0 < trace.se and abs(trace.trace - float(torch.trace(H))) <= 4 * trace.se
    last = names[-2:]  # the last layer's block of H: a sketch that spans it gives its trace exactly, SE 0
    size = sum(mix(start, end, x)[k].numel() for k in last)
    block = curve.trace(x, matvecs=3 * size, keys=set(last))
    assert block.trace == pytest.approx(float(torch.trace(H[-size:, -size:])), rel=1e-8, abs=1e-10)
    assert block.se == pytest.approx(0.0, abs=1e-8)
    top = curve.spectrum(x, k=1, keys=set(last))
    assert top.eigenvalues[0] == pytest.approx(float(torch.linalg.eigvalsh(H[-size:, -size:])[-1]), rel=1e-8)


def smooth_convnet():
    return bn_convnet(nn.GELU)


def smooth_mlp():
    return mlp(nn.GELU)


@pytest.mark.slow
def test_path_curvature_is_the_second_difference_of_the_sweeps_loss():
    """With BatchNorm's statistics moving (the sweep's interpolate policy), L'' is the second
    derivative of the engine's own curve: its central differences (the engine scores float32
    logits, so a wide five-point stencil)."""
    start, end = states(smooth_convnet, 3)
    evalset = data((2, 6, 6), n=48)
    e = engine(smooth_convnet, evalset, use_stem=False)  # a mixed stem's outputs are float32
    assert e.folds_bn  # the sweep's own path: BatchNorm folded into the convolutions
    curve = PathCurvature(e, start, end)
    assert curve.moving == "path"
    curve.points([0.0])
    assert curve.method == "taylor"  # auto chose the Taylor pass: the statistics' jets are checked here
    h = 5e-2
    for x in (0.0, 0.4, 1.0):
        (p,) = curve.points([x])
        losses = [r.loss for r in e.evaluate_path(start, end, [x - 2 * h, x - h, x, x + h, x + 2 * h])]
        second = (-losses[0] + 16 * losses[1] - 30 * losses[2] + 16 * losses[3] - losses[4]) / (12 * h * h)
        first = (losses[0] - 8 * losses[1] + 8 * losses[3] - losses[4]) / (12 * h)
        assert p.loss == pytest.approx(losses[2], rel=1e-6)
        assert p.slope == pytest.approx(first, rel=1e-3)  # the stencil's h⁴ term at this spacing
        assert p.curvature == pytest.approx(second, rel=2e-3, abs=2e-4)


def test_path_and_weights_differ_only_by_the_statistics():
    """A plain float64 loop (load_state_dict of mixed states, F.cross_entropy in float64): its
    second difference is L'' with the statistics moving; holding them gives uᵀHu over the weights,
    which is a different number for a BatchNorm net and the same for an MLP."""
    start, end = states(smooth_convnet, 5)
    evalset = data((2, 6, 6))

    def plain(x):
        model = smooth_convnet().double().eval()
        model.load_state_dict(mix(start, end, x))
        return float(F.cross_entropy(model(evalset.inputs), evalset.labels))

    h, x = 1e-4, 0.6
    second = (plain(x - h) - 2 * plain(x) + plain(x + h)) / h**2
    e = engine(smooth_convnet, evalset)
    (path,) = PathCurvature(e, start, end).points([x])
    (weights,) = PathCurvature(e, start, end, moving="weights").points([x])
    assert path.curvature == pytest.approx(second, rel=1e-5)
    assert abs(weights.curvature - path.curvature) > 1e-3 * abs(path.curvature)
    a, b = states(smooth_mlp, 1)
    m = engine(smooth_mlp, data((12,)))
    assert PathCurvature(m, a, b).points([x])[0].curvature == pytest.approx(
        PathCurvature(m, a, b, moving="weights").points([x])[0].curvature, rel=1e-12
    )


def test_the_batchnorm_formula_is_batchnorm():
    start, _ = states(bn_convnet, 2)
    model = bn_convnet().double().eval()
    model.load_state_dict(start)
    inputs = data((2, 6, 6)).inputs
    expected = model(inputs)
    norm = nn.LayerNorm(6).double()
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    normed = norm(inputs)
    with differentiable():
        torch.testing.assert_close(model(inputs), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(norm(inputs), normed, rtol=1e-12, atol=1e-12)


def test_recompute_holds_the_statistics_and_refuses_moving_path():
    start, end = states(bn_convnet, 4)
    evalset = data((2, 6, 6))
    e = engine(bn_convnet, evalset)
    batches = [evalset.inputs[:16], evalset.inputs[16:32]]
    curve = PathCurvature(e, start, end, bn="recompute", bn_batches=batches)
    assert curve.moving == "weights"
    x = 0.5
    (point,) = curve.points([x])
    recomputed = {k: v.clone() for k, v in e.model.state_dict().items()}  # θ(x) with recomputed statistics
    names, H = dense_hessian(bn_convnet, recomputed, evalset)
    u = flat(end, names) - flat(start, names)
    assert point.curvature == pytest.approx(float(u @ H @ u), rel=1e-9)
    with pytest.raises(LinpathError, match="recompute"):
        PathCurvature(e, start, end, bn="recompute", bn_batches=batches, moving="path")


def test_limit_evaluates_a_stated_subset():
    start, end = states(mlp, 8)
    evalset = data((12,), n=40)
    curve = PathCurvature(engine(mlp, evalset), start, end, limit=20)
    (point,) = curve.points([0.5])
    names, H = dense_hessian(mlp, mix(start, end, 0.5), EvalSet(evalset.inputs[:20], evalset.labels[:20]))
    u = flat(end, names) - flat(start, names)
    assert point.units == 20
    assert point.curvature == pytest.approx(float(u @ H @ u), rel=1e-9)


def test_lanczos_and_hutchpp_on_explicit_matrices():
    g = torch.Generator().manual_seed(0)
    dim = 200
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    values = torch.cat([torch.tensor([50.0, 30.0, 20.0, -15.0]), torch.randn(dim - 4, generator=g).double()])
    A = Q @ torch.diag(values) @ Q.T
    spectrum = lanczos(lambda v: A @ v, dim, k=3, steps=40)
    np.testing.assert_allclose(spectrum.eigenvalues, [50.0, 30.0, 20.0], atol=1e-6)
    assert max(spectrum.residuals) < 1e-4
    # Hutchinson's standard error is honest: over many seeds, |estimate - trace| / se is about normal
    exact = float(values.sum())
    z = []
    for seed in range(200):
        est = hutchpp(lambda v: A @ v, dim, matvecs=30, seed=seed, sketch=False)
        z.append((est.trace - exact) / est.se)
    assert 0.85 < float(np.std(z)) < 1.2
    plus = hutchpp(lambda v: A @ v, dim, matvecs=30, seed=1)
    assert abs(plus.trace - exact) < 4 * plus.se
    with pytest.raises(LinpathError, match="eigenvalues"):
        lanczos(lambda v: A @ v, dim, k=0)
    with pytest.raises(LinpathError, match="products"):
        hutchpp(lambda v: A @ v, dim, matvecs=2)


def test_language_model_directional_curvature_against_finite_differences():
    """A tiny random GPT-2 (float64) on the streamed evaluator's causal-LM loss: L'' against the
    central second difference of a float64 plain loop (the next-token cross-entropy per token)."""
    transformers = pytest.importorskip("transformers")
    from linpath.data.stream import TensorStream
    from linpath.engine.streamed import StreamedEvaluator
    from linpath.engine.tasks import make_task

    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    ends = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ends.append(
            {k: v.double().clone() for k, v in transformers.GPT2LMHeadModel(config).state_dict().items()}
        )
    model = transformers.GPT2LMHeadModel(config).double().eval()
    ids = torch.randint(0, 32, (6, 12), generator=torch.Generator().manual_seed(3))
    evaluator = StreamedEvaluator(
        model, TensorStream(ids, ids, 3), make_task("causal-lm"), torch.device("cpu")
    )
    x, h = 0.4, 1e-4

    def plain(x):
        m = transformers.GPT2LMHeadModel(config).double().eval()
        m.load_state_dict(mix(ends[0], ends[1], x), strict=False)
        logits = m(ids).logits[:, :-1]  # float64 throughout (Hugging Face's own loss casts to float32)
        return float(F.cross_entropy(logits.reshape(-1, 32), ids[:, 1:].reshape(-1)))

    mix_ = StateMix(model, [DictState(ends[0]), DictState(ends[1])], ["start", "end"])
    (forward,) = streamed_points(evaluator, mix_, [x], method="forward")
    (reverse,) = streamed_points(evaluator, mix_, [x], method="reverse")
    assert forward.units == 6 * 11  # tokens predicted
    assert forward.loss == pytest.approx(plain(x), rel=1e-6)  # the task scores float32 logits
    second = (plain(x - h) - 2 * plain(x) + plain(x + h)) / h**2
    assert forward.curvature == pytest.approx(second, rel=1e-4)
    assert reverse.curvature == pytest.approx(forward.curvature, rel=1e-6)


class TrainModeNorm(nn.Module):
    """Normalizes with the batch's own statistics (batch_norm in training mode), an operation
    whose second forward derivative torch gets wrong."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(12, 3)

    def forward(self, inputs):
        return F.batch_norm(self.linear(inputs.flatten(1)), None, None, training=True)


def test_auto_falls_back_to_reverse_where_forward_twice_is_not_exact():
    torch.manual_seed(0)
    start = {k: v.double() for k, v in TrainModeNorm().state_dict().items()}
    end = {k: v.double() for k, v in TrainModeNorm().state_dict().items()}
    e = PathEvaluator(TrainModeNorm().double(), data((12,)), batch_size=64, layout=Layout(use_stem=False))
    curve = PathCurvature(e, start, end)
    with pytest.warns(RuntimeWarning, match="forward-over-reverse"):
        (auto,) = curve.points([0.5])
    assert curve.method == "reverse"
    curve.method = "forward"
    (forward,) = curve.points([0.5])
    assert abs(forward.curvature - auto.curvature) > 1e-3 * abs(
        auto.curvature
    )  # the wrong one, had it been used
    model = TrainModeNorm().double()
    inputs, labels = data((12,)).inputs, data((12,)).labels

    def plain(x):
        model.load_state_dict(mix(start, end, x))
        return float(F.cross_entropy(model(inputs), labels))

    h = 1e-4
    assert auto.curvature == pytest.approx(
        (plain(0.5 - h) - 2 * plain(0.5) + plain(0.5 + h)) / h**2, rel=1e-5
    )


def test_a_settings_parameter_subset_moves_only_its_tensors():
    """line_curvature with --params '1.*': uᵀHu with u zero outside layer 1 (the dense Hessian's
    block), and the spectrum over layer 1's parameters only."""
    from linpath.sweep.engine_entry import line_curvature, line_job

    start, end = states(mlp, 9)
    evalset = data((12,))
    job = line_job(
        mlp().double(), evalset, SweepSetting(params="1.*"), batch_size=64, layout=Layout(channels_last=False)
    )
    curve = line_curvature(job, start, end)
    (point,) = curve.points([0.5])
    held = {
        **end,
        **{k: v for k, v in start.items() if k.startswith("1.")},
    }  # --hold end: the others at the end's
    names, H = dense_hessian(mlp, mix(held, end, 0.5), evalset)
    u = torch.cat(
        [
            (end[k] - start[k]).reshape(-1)
            if k.startswith("1.")
            else torch.zeros(start[k].numel(), dtype=torch.float64)
            for k in names
        ]
    )
    assert point.curvature == pytest.approx(float(u @ H @ u), rel=1e-9)
    size = sum(start[k].numel() for k in names if k.startswith("1."))
    top = curve.spectrum(0.5, k=1, steps=size)
    assert top.eigenvalues[0] == pytest.approx(float(torch.linalg.eigvalsh(H[:size, :size])[-1]), rel=1e-8)


class Residual(nn.Module):
    """A ResNet-like block with every kind of node the Taylor pass meets: functional ReLU, a sum,
    pooling, BatchNorm without affine, a parameter used directly (get_attr), a view and a GELU
    (lifted)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.plain_bn = nn.BatchNorm2d(4, affine=False)
        self.skip = nn.Conv2d(2, 4, 1, bias=False)
        self.head = nn.Linear(4 * 3 * 3, 3)
        self.scale = nn.Parameter(torch.ones(3))

    def forward(self, inputs):
        h = F.relu(self.bn(self.conv(inputs)))
        h = self.plain_bn(h) + self.skip(inputs)
        h = F.max_pool2d(F.gelu(h), 2)
        return self.head(h.view(h.shape[0], -1)) * self.scale


class Untraceable(nn.Module):
    """Control flow on a tensor's value: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(12, 3)

    def forward(self, inputs):
        out = self.linear(inputs.flatten(1))
        return out if float(out.sum()) > -1e9 else -out


@pytest.mark.parametrize("moving", ["path", "weights"])
def test_the_taylor_pass_equals_forward_over_reverse_on_every_kind_of_node(moving):
    """The Taylor pass (rules for convolutions, Linear, ReLU, sums and BatchNorm with its
    statistics moving; nested jvp for the rest) against forward over reverse, and its L'' against
    a plain float64 loop's second difference (the statistics moving)."""
    start, end = states(Residual, 0, noise=0.3)
    evalset = data((2, 6, 6))
    e = engine(Residual, evalset, use_stem=False)
    curve = PathCurvature(e, start, end, moving=moving)
    x = 0.35
    points = {}
    for method in ("taylor", "reverse"):
        curve.method = method
        (points[method],) = curve.points([x])
    taylor, reverse = points["taylor"], points["reverse"]
    assert taylor.loss == pytest.approx(reverse.loss, rel=1e-12)
    assert taylor.slope == pytest.approx(reverse.slope, rel=1e-9)
    assert taylor.curvature == pytest.approx(reverse.curvature, rel=1e-9)
    if moving == "path":
        model = Residual().double().eval()

        def plain(t):
            model.load_state_dict(mix(start, end, t))
            with torch.no_grad():
                return float(F.cross_entropy(model(evalset.inputs), evalset.labels))

        h = 1e-4
        second = (plain(x - h) - 2 * plain(x) + plain(x + h)) / h**2
        assert taylor.curvature == pytest.approx(second, rel=1e-5)


@pytest.mark.parametrize("moved", ["conv.bias", "skip.weight", "bn.running_var", "scale"])
def test_the_taylor_pass_with_one_tensor_moving(moved):
    """Only one tensor moves (a parameter subset): zero derivatives elsewhere, a bias's derivative
    broadcast over the batch before the next convolution."""
    start, end = states(Residual, 2, noise=0.3)
    curve = PathCurvature(engine(Residual, data((2, 6, 6)), use_stem=False), start, end)
    curve.tangent = {moved: curve.tangent[moved]}
    points = {}
    for method in ("taylor", "reverse"):
        curve.method = method
        (points[method],) = curve.points([0.6])
    assert points["taylor"].slope == pytest.approx(points["reverse"].slope, rel=1e-9, abs=1e-14)
    assert points["taylor"].curvature == pytest.approx(points["reverse"].curvature, rel=1e-9, abs=1e-14)
    assert points["taylor"].curvature != 0.0


def test_auto_uses_forward_twice_where_the_model_cannot_be_traced():
    torch.manual_seed(0)
    start, end = ({k: v.double() for k, v in Untraceable().state_dict().items()} for _ in range(2))
    e = PathEvaluator(Untraceable().double(), data((12,)), batch_size=64, layout=Layout(use_stem=False))
    curve = PathCurvature(e, start, end)
    (point,) = curve.points([0.5])
    assert curve.method == "forward"
    assert math.isfinite(point.curvature)


@pytest.mark.parametrize(
    "name,shape", [("mnist_lenet_300_100", (1, 28, 28)), ("cifar_resnet_20", (3, 32, 32))]
)
def test_the_presets_take_the_taylor_pass_and_it_equals_forward_over_reverse(name, shape):
    from linpath.models import build

    def make():
        return build(name, 10)

    start, end = states(make, 0)
    evalset = data(shape, n=6)
    e = engine(make, evalset, use_stem=False)
    curve = PathCurvature(e, start, end)
    (taylor,) = curve.points([0.5])
    assert curve.method == "taylor"
    curve.method = "reverse"
    (reverse,) = curve.points([0.5])
    assert taylor.slope == pytest.approx(reverse.slope, rel=1e-9)
    assert taylor.curvature == pytest.approx(reverse.curvature, rel=1e-9)


class InplaceResidual(nn.Module):
    """An in-place ReLU on a tensor that is read again afterwards, and an in-place sum: the Taylor
    pass must give later readers the changed tensor, as eager does."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 8), nn.Linear(8, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, inputs):
        h = self.fc1(inputs.flatten(1))
        g = self.act(h)  # h itself is changed: g and h are one tensor from here on
        s = 2.0 * h
        s += g
        return self.fc2(s + h)


class TupleShared(nn.Module):
    """A (logits, features) output, one Linear used twice, jets multiplied and concatenated."""

    def __init__(self):
        super().__init__()
        self.fc, self.shared, self.head = nn.Linear(12, 6), nn.Linear(6, 6), nn.Linear(12, 3)

    def forward(self, inputs, scale: float = 0.5):
        h = torch.tanh(self.fc(inputs.flatten(1)))
        a = self.shared(self.shared(h))
        return self.head(torch.cat([a * h, scale * torch.sigmoid(a)], dim=1)), h


class OddConvs(nn.Module):
    """Grouped, strided and dilated convolutions, BatchNorm1d, average pooling, a layer norm."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False)
        self.bn = nn.BatchNorm1d(16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 3)

    def forward(self, inputs):
        h = F.avg_pool2d(F.relu(self.c2(self.c1(inputs))), 1).flatten(1)[:, :16]
        return self.head(self.norm(self.bn(h)))


class Sequence(nn.Module):
    """A Linear over a (batch, positions, features) input, averaged over positions."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, inputs):
        return self.head(F.gelu(self.fc(inputs.view(inputs.shape[0], 3, 4))).mean(1))


def _bn1d_states(make, seed):
    start, end = states(make, seed, noise=0.3)
    for i, s in enumerate((start, end)):
        g = torch.Generator().manual_seed(seed + i)
        for k in [k for k in s if k.endswith("running_var")]:
            s[k] = torch.rand(s[k].shape, generator=g, dtype=torch.float64) + 0.5
            s[k.replace("running_var", "running_mean")] = torch.randn(
                s[k].shape, generator=g, dtype=torch.float64
            )
    return start, end


@pytest.mark.parametrize(
    "make,shape", [(InplaceResidual, (12,)), (TupleShared, (12,)), (OddConvs, (2, 6, 6)), (Sequence, (12,))]
)
def test_auto_curvature_on_hostile_models_equals_forward_over_reverse(make, shape):
    """Whatever method "auto" picks on models built to trip the Taylor pass, L' and L'' are
    forward over reverse's (float64) and L is the plain model's."""
    start, end = _bn1d_states(make, 11)
    evalset = data(shape)
    curve = PathCurvature(engine(make, evalset, use_stem=False), start, end)
    (auto,) = curve.points([0.4])
    chosen = curve.method
    curve.method = "reverse"
    (reverse,) = curve.points([0.4])
    assert auto.slope == pytest.approx(reverse.slope, rel=1e-8), chosen
    assert auto.curvature == pytest.approx(reverse.curvature, rel=1e-8), chosen
    model = make().double().eval()
    model.load_state_dict(mix(start, end, 0.4))
    with torch.no_grad():
        out = model(evalset.inputs)
    logits = out[0] if isinstance(out, tuple) else out
    assert auto.loss == pytest.approx(float(F.cross_entropy(logits, evalset.labels)), rel=1e-10)
    assert chosen == "taylor"  # each of these is one the Taylor pass carries
